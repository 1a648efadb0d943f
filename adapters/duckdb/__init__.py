"""DuckDB engine adapter: the exact window kernel in SQL over Arrow, and its aggregator."""
