"""Adapters: technology-specific implementations of the core's ports, and every surface."""
