"""The Polars engine: its window kernel (and the aggregator built on it)."""
