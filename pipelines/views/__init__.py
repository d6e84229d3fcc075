"""Analyst pages of the pipelines app: pipelines and the editor, runs."""
