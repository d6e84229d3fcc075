"""Step types (being written)."""
