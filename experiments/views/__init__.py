"""Analyst pages of the experiments app."""
