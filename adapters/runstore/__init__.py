"""Run stores: where jobs are recorded."""
