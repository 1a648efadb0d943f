"""Embedding enrichment: Lance embedding stores, mean pooling, and the Ray Data enricher."""
