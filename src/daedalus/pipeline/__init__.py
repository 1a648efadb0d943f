"""pipeline layer: compile a feature service, check its inputs, train its days."""

#: Spine rows computed together by default: consecutive days are batched up to this many rows
#: (about 14 days of the large demo), so that one aggregator call per feature operator does
#: the work of many days; memory grows with the batch, not with the date range. Measured on
#: the large demo's 30 days (bench/pipeline.py, Polars): 1,000,000 rows took 44.8 s at
#: 4.4 GB peak, 500,000 took 48.7 s at 4.0 GB. Kept here, not in the executor, so that
#: reading settings imports no engine of any kind.
DEFAULT_BATCH_ROWS = 500_000
