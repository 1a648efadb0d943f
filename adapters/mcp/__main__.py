"""`python -m daedalus.adapters.mcp`: serve the Daedalus MCP server over stdio (or HTTP).

Example: python -m daedalus.adapters.mcp --workspace demo --catalog demo/feature_views
"""

from __future__ import annotations

import argparse
import logging
import sys

from daedalus.app.settings import Settings
from daedalus.container import build_container


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m daedalus.adapters.mcp", description="Serve Daedalus over MCP."
    )
    parser.add_argument("--workspace", help="Workspace directory (env DAEDA_WORKSPACE).")
    parser.add_argument("--catalog", help="Catalog directory (env DAEDA_CATALOG).")
    parser.add_argument("--out", help="Output directory (env DAEDA_OUT).")
    parser.add_argument("--engine", choices=["duckdb", "polars"], help="Default engine.")
    parser.add_argument(
        "--http",
        metavar="PORT",
        type=int,
        help="Serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio.",
    )
    args = parser.parse_args(argv)
    # stdout carries the protocol: every log line goes to stderr.
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    settings = Settings.from_env(
        workspace=args.workspace, catalog_dir=args.catalog, out_dir=args.out, engine=args.engine
    )
    application = build_container(settings).application()
    # Imported after the settings are read so `--help` stays fast.
    from daedalus.adapters.mcp.server import run_http, run_stdio

    if args.http is not None:
        run_http(application, port=args.http)
    else:
        run_stdio(application)


if __name__ == "__main__":
    main()
