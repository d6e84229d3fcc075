"""Analyst pages of the datasources app: datasets and data sources."""
