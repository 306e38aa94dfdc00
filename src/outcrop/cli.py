"""The ``outcrop`` command: one entry point for the server and its tools."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from outcrop.config import DEFAULT_PORT, ConfigError, load_config


def _serve(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces

    from outcrop.store.engine import Store

    config = load_config(
        args.config, host=args.host, port=args.port, database_url=args.database, workers=args.workers
    )
    # Worker processes rebuild the same config from the environment (see ``outcrop.app.factory``).
    if args.config:
        os.environ["OUTCROP_CONFIG"] = str(args.config)
    os.environ["OUTCROP_DATABASE_URL"] = config.resolved_database_url
    os.environ["OUTCROP_HOST"] = config.host
    os.environ["OUTCROP_PORT"] = str(config.port)
    # Migrate once, before any worker starts (workers migrate too, under a lock, for embedded use).
    store = Store(config.resolved_database_url)
    try:
        store.migrate()
    finally:
        store.close()
    print(
        f"outcrop serving on http://{config.host}:{config.port} (database {_redact(config.resolved_database_url)})",
        file=sys.stderr,
        flush=True,
    )
    Granian(
        "outcrop.app:factory",
        factory=True,
        address=config.host,
        port=config.port,
        interface=Interfaces.ASGI,
        http=HTTPModes.auto,
        workers=config.workers,
        websockets=False,
        log_enabled=True,
    ).serve()
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outcrop", description="Amazon Bedrock inference profiles, self-hosted.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (bedrock and bedrock-runtime on one port)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port to listen on (default {DEFAULT_PORT})")
    serve.add_argument("--database", help="SQLAlchemy URL: sqlite:///path or postgresql://user@host/db")
    serve.add_argument("--config", help="TOML config file")
    serve.add_argument("--workers", type=int, help="server processes (default 1)")
    serve.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"outcrop: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
