"""Daedalus: a point-in-time-correct feature platform (YAML feature views → training datasets).

`daedalus.open_workspace(path)` opens a workspace for Python (see `daedalus.app.workspace`);
it is imported on first use, so `import daedalus` loads no Arrow, engine or Ray.
"""

import importlib as _importlib

__version__ = "0.1.0"

__all__ = ["Workspace", "__version__", "open_workspace"]

#: Names exported lazily: imported from their module on first access.
_LAZY = {"open_workspace": "daedalus.api", "Workspace": "daedalus.app.workspace"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'daedalus' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
