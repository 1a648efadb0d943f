"""The Polars engine: its implementation of the window kernel."""
