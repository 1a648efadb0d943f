"""Dagster adapter: one daily-partitioned asset per feature service, trained through the app."""
