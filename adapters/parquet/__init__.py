"""Parquet output: per-day directories published atomically with a manifest."""
