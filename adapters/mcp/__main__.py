"""`python -m daedalus.adapters.mcp`: the same as `daeda mcp` (stdio, or HTTP with --http).

Example: python -m daedalus.adapters.mcp --workspace demo --catalog feature_views
         python -m daedalus.adapters.mcp --http --port 8001 --token s3cret --workspace demo
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from daedalus.adapters.cli.app import app

    args = sys.argv[1:] if argv is None else argv
    sys.exit(app(["mcp", *args], result_action="return_value"))


if __name__ == "__main__":
    main()
