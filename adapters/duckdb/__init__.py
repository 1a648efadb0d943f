"""DuckDB engine adapter: the window kernel computed in SQL over Arrow tables."""
