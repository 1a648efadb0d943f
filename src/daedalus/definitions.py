"""The Dagster code location (`dagster dev -m daedalus.definitions`), configured by DAEDA_* vars.

DAEDA_WORKSPACE, DAEDA_CATALOG, DAEDA_OUT and DAEDA_ENGINE are read by `Settings.from_env`;
DAEDA_PARTITION_START (YYYY-MM-DD) optionally pins the first daily partition of every service.
Without it, each service's first partition is the first day of its spine, which the application
finds as `daeda pipeline status` does (input files not yet fingerprinted are read, embedding
stores opened) at every load of the code location: pin it to make loading cheap.
"""

import os

from daedalus.adapters.dagster.assets import build_definitions
from daedalus.app.settings import Settings

defs = build_definitions(
    Settings.from_env(), partition_start=os.environ.get("DAEDA_PARTITION_START") or None
)
