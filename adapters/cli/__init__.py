"""The daeda command line."""
