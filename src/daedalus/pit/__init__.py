"""pit layer."""
