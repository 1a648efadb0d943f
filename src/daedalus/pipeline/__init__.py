"""pipeline layer: compile a feature service, check its inputs, train its days."""

#: Spine rows computed together by default: consecutive days are batched up to this many rows
#: (about 30 days of the large demo), so that one aggregator call per feature operator does
#: the work of many days; memory grows with the batch, not with the date range. Kept here,
#: not in the executor, so that reading settings imports no engine of any kind.
DEFAULT_BATCH_ROWS = 1_000_000
