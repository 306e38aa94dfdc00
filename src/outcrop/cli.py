"""The ``outcrop`` command: one entry point for the server and its tools."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from outcrop import logs
from outcrop.config import DEFAULT_PORT, ConfigError, load_config

if TYPE_CHECKING:
    from outcrop.config import Config
    from outcrop.store.engine import Store


def _serve(args: argparse.Namespace) -> int:
    from outcrop.server import serve
    from outcrop.store.engine import Store
    from outcrop.workers import SERVER_ENV, claim_server, sweep

    config = load_config(
        args.config, host=args.host, port=args.port, database_url=args.database, workers=args.workers,
        auth_mode=args.auth,
    )
    logs.configure(config.log_level, config.log_format)
    # Worker processes rebuild the same config from the environment (see ``outcrop.app.factory``).
    if args.config:
        os.environ["OUTCROP_CONFIG"] = str(args.config)
    os.environ["OUTCROP_DATABASE_URL"] = config.resolved_database_url
    os.environ["OUTCROP_HOST"] = config.host
    os.environ["OUTCROP_PORT"] = str(config.port)
    os.environ["OUTCROP_AUTH_MODE"] = config.auth_mode
    os.environ["OUTCROP_WORKERS"] = str(config.worker_processes)  # 0 (one per core) made a number here, once
    # This process supervises the workers: their shared state is in a folder of this server's own, held
    # (the descriptor stays open for the server's life) so that no other server's sweep removes it.
    server, _held = claim_server(config.data_dir / "workers")
    os.environ[SERVER_ENV] = server
    sweep(config.data_dir / "workers", keep=server)
    # Migrate once, before any worker starts (workers migrate too, under a lock, for embedded use).
    store = Store(config.resolved_database_url)
    try:
        store.migrate()
    finally:
        store.close()
    workers = config.worker_processes

    def announce(port: int) -> None:
        line = (f"outcrop serving on http://{config.host}:{port} (database {_redact(config.resolved_database_url)}, "
                f"{workers} worker{'s' if workers > 1 else ''})")
        if config.log_format == "json":  # a log collector reads every line as an object
            print(logs.JSONFormatter().format(logging.makeLogRecord(
                {"name": "outcrop", "levelname": "INFO", "msg": line})), file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    serve(config, announce)
    return 0


def _database_url(args: argparse.Namespace) -> str:
    """The database a command used: its --database, else the configuration's (file, environment)."""
    if getattr(args, "database", None):
        return str(args.database)
    try:
        return load_config(getattr(args, "config", None)).resolved_database_url
    except ConfigError:
        return "(the configured database)"


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _store(config: Config, *, must_exist: bool) -> Store:
    """The database of a command other than ``serve``, migrated to this version (quietly). With
    ``must_exist`` a SQLite file that is not there is an error, not a new empty database: a report read
    from a mistyped path would say "no spend"."""
    import logging

    from sqlalchemy.engine import make_url

    from outcrop.store.engine import Store

    url = config.resolved_database_url
    parsed = make_url(url)  # an ill-formed URL raises ArgumentError, which main() reports
    if must_exist and parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).exists():
        raise ConfigError(f"the database {url} does not exist (outcrop serve creates it)")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    store = Store(url)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


def _identities(args: argparse.Namespace) -> int:
    """``outcrop keys …`` and ``outcrop api-keys …``: issue, list and delete credentials in the database."""
    import json

    from outcrop.auth.identities import Identities, IdentityError

    config = load_config(args.config, database_url=args.database)
    policy = None
    if getattr(args, "policy", None):
        from outcrop.auth.policy import PolicyError, parse_policy

        try:
            text = Path(args.policy).read_text()
            parse_policy(text)
        except (OSError, UnicodeDecodeError, PolicyError) as e:  # a file that is not UTF-8 text too
            print(f"outcrop: policy {args.policy}: {e}", file=sys.stderr)
            return 2
        policy = json.dumps(json.loads(text), separators=(",", ":"))
    store = _store(config, must_exist=False)
    try:
        identities = Identities(store)
        api = args.command == "api-keys"
        if args.action == "create":
            create = identities.create_api_key if api else identities.create_access_key
            try:
                result: object = create(args.account, policy, args.user_name)
            except IdentityError as e:
                print(f"outcrop: {e}", file=sys.stderr)
                return 2
        elif args.action == "list":
            result = (identities.list_api_keys if api else identities.list_access_keys)(args.account)
        else:
            deleted = (identities.delete_api_key if api else identities.delete_access_key)(args.key_id)
            if not deleted:
                print(f"outcrop: no such key: {args.key_id}", file=sys.stderr)
                return 1
            result = {"deleted": args.key_id}
    finally:
        store.close()
    print(json.dumps(result, indent=2))
    return 0


def _add_identity_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for command, what, key_help in (
        ("keys", "SigV4 access keys", "the access key ID"),
        ("api-keys", "Bedrock API keys (Authorization: Bearer)", "the apiKeyId shown by create and list"),
    ):
        parser = sub.add_parser(command, help=f"create, list and delete {what}")
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="issue a key; its secret is printed this once")
        create.add_argument("--account", required=True, help="the 12-digit account the key acts in")
        create.add_argument("--policy", help="an IAM-style identity policy (JSON file); default: allow everything")
        create.add_argument("--user-name", help="the IAM user name the key acts as (default: root, or one derived from the key)")
        listing = actions.add_parser("list", help="list keys (never their secrets)")
        listing.add_argument("--account", help="only keys of this account")
        remove = actions.add_parser("delete", help="delete a key; a running server refuses it at once")
        remove.add_argument("key_id", help=key_help)
        for p in (create, listing, remove):
            p.add_argument("--database", help="SQLAlchemy URL (default: the one outcrop serve uses)")
            p.add_argument("--config", help="TOML config file")
            p.set_defaults(func=_identities)


def _usage(args: argparse.Namespace) -> int:
    """``outcrop usage`` / ``outcrop costs``: the report of ``GET /_outcrop/usage``, read from the database."""
    from outcrop.metering.queries import QueryError, parse_query, run_query
    from outcrop.metering.report import render

    config = load_config(args.config, database_url=args.database)
    account = args.account or config.default_account
    if not (len(account) == 12 and account.isdigit()):
        print(f"outcrop: --account {account!r} is not a 12-digit account ID", file=sys.stderr)
        return 2
    try:
        query = parse_query(account, args.since, args.until, args.granularity, args.group_by or [])
    except QueryError as e:
        print(f"outcrop: {e}", file=sys.stderr)
        return 2
    store = _store(config, must_exist=True)
    try:
        report = store.read_sync(lambda conn: run_query(conn, query, args.source))
    finally:
        store.close()
    report["account"] = account
    sys.stdout.write(render(report, args.format, costs=args.command == "costs"))
    return 0


def _add_usage_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for command, what in (("usage", "invocations, tokens, errors and cost"), ("costs", "cost and tokens")):
        parser = sub.add_parser(command, help=f"report {what} per period and group (as GET /_outcrop/usage)")
        parser.add_argument("--since", help="ISO-8601 start (default: the first of this month, UTC)")
        parser.add_argument("--until", help="ISO-8601 end (default: now)")
        parser.add_argument("--granularity", choices=("minute", "hour", "day", "month"), help="one row per period")
        parser.add_argument("--group-by", action="append", metavar="KEY",
                            help="profile, model, region, identity, modelId, tag:KEY or metadata:KEY (repeatable)")
        parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
        parser.add_argument("--account", help="the 12-digit account (default: the configured default account)")
        parser.add_argument("--source", choices=("rollups", "events"), default="rollups", help=argparse.SUPPRESS)
        parser.add_argument("--database", help="SQLAlchemy URL (default: the one outcrop serve uses)")
        parser.add_argument("--config", help="TOML config file")
        parser.set_defaults(func=_usage)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outcrop", description="Amazon Bedrock inference profiles, self-hosted.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (bedrock and bedrock-runtime on one port)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port to listen on (default {DEFAULT_PORT})")
    serve.add_argument("--database", help="SQLAlchemy URL: sqlite:///path or postgresql://user@host/db")
    serve.add_argument("--config", help="TOML config file")
    serve.add_argument("--workers", type=int, help="server processes (default 0: one per core)")
    serve.add_argument("--auth", choices=("open", "strict"),
                       help="open (default): accept any caller; strict: authenticate and authorize every request")
    serve.set_defaults(func=_serve)
    _add_identity_commands(sub)
    _add_usage_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure()
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"outcrop: {e}", file=sys.stderr)
        return 2
    except SQLAlchemyError as e:  # the database cannot be opened: a URL of no known kind, a server not reached
        detail = str(e.orig if getattr(e, "orig", None) is not None else e).strip().splitlines()[0]
        print(f"outcrop: the database {_redact(_database_url(args))} cannot be used: {detail}", file=sys.stderr)
        return 2
    except OSError as e:  # the SQLite database's directory cannot be made (a data_dir not writable …)
        print(f"outcrop: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
