"""Parquet: sources read through `reader.ParquetSourceReader` (globbing, footers, range-pruned
reads), and output per-day directories published atomically with a manifest (`sink`)."""
