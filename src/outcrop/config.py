"""One typed configuration object for the whole server.

Precedence, lowest first: the embedded defaults below, a TOML file (``--config`` or ``OUTCROP_CONFIG``),
``OUTCROP_*`` environment variables, then command-line flags. Everything else reads this object; nothing
reads the environment on its own.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from outcrop.workers import MAX_WORKERS

# Workers started by default on a machine with more cores. Each costs ~125 MB (the service models and
# catalogue in the worker, its metering ingester beside it), and each worker's ingester is one more writer
# on the database; more can be asked for with ``workers``.
DEFAULT_WORKERS_CAP = 8


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the system has one), else all of them."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1

DEFAULT_PORT = 8643
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
MIN_HEADER_BYTES = 8192  # below this, ordinary clients' requests (long SigV4 headers, cookies) would not fit


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "outcrop"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


@dataclass(frozen=True)
class CatalogExtras:
    """Regions, foundation models and system profiles added to the shipped catalogue by the config file."""

    models: tuple[dict[str, Any], ...] = ()
    profiles: tuple[dict[str, Any], ...] = ()


BACKENDS = ("builtin", "openai", "bedrock")


@dataclass(frozen=True)
class Deployment:
    """Where invocations of a (Region, model) pair are served. ``region`` and ``model`` are globs.

    ``builtin`` is the embedded deterministic model; ``openai`` any chat-completions server at ``url``
    (``backend_model`` names the model there, default: the Bedrock model ID); ``bedrock`` an upstream
    Bedrock endpoint (``url`` optional, default AWS's bedrock-runtime endpoint of ``upstream_region``),
    signed with the ``aws_*`` credentials or called with ``api_key`` as a Bedrock API key; there
    ``backend_model`` may be an upstream inference-profile ID or ARN.
    """

    region: str = "*"
    model: str = "*"
    backend: str = "builtin"
    url: str | None = None
    api_key: str | None = None
    backend_model: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    upstream_region: str | None = None  # default: the deployment's Region
    timeout_seconds: float = 60.0
    # builtin: time to first token and generation speed (0: as fast as possible).
    ttft_ms: float = 0.0
    tokens_per_second: float = 0.0
    # Capacity, enforced by the router (0: unlimited): concurrent requests, requests and tokens per minute.
    max_concurrency: int = 0
    rpm: int = 0
    tpm: int = 0
    # A label for /_outcrop/routing and /metrics (default: the backend and its place in the config).
    name: str | None = None

    def matches(self, region: str, model_id: str) -> bool:
        return fnmatch.fnmatchcase(region, self.region) and fnmatch.fnmatchcase(model_id, self.model)


BUILTIN = Deployment()

STRATEGIES = ("source-first", "least-loaded", "ordered")


@dataclass(frozen=True)
class Routing:
    """How the router chooses among a profile's deployments (``[routing]``; see outcrop.routing)."""

    # "source-first": the caller's Region while it has room, then the others; "least-loaded": every
    # candidate on equal terms; "ordered": the profile's order, for failover only. Ties in the first
    # two go to the least outstanding requests per unit of capacity.
    strategy: str = "source-first"
    # How long a request may wait for room when every candidate is at capacity (0: reject at once),
    # and how many may wait at a time (beyond that: rejected at once).
    max_wait_ms: int = 0
    max_waiting: int = 1000
    # The whole invocation, every failover attempt included (a stream: until its first event).
    total_timeout_ms: int = 120_000
    # Circuit breaker per deployment: opened by this many consecutive failures, probed after the cooldown.
    breaker_failures: int = 5
    breaker_cooldown_ms: int = 10_000


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    workers: int = 0  # 0: one per core (``worker_processes``)
    default_account: str = DEFAULT_ACCOUNT
    default_region: str = DEFAULT_REGION
    # access key id -> account id; keys not listed act in ``default_account``.
    accounts: dict[str, str] = field(default_factory=dict)
    application_profile_quota: int = 1000
    max_tags_per_resource: int = 50
    idempotency_ttl_hours: int = 24
    log_format: str = "text"
    log_level: str = "info"
    # "open": any caller, no verification (local development); "strict": every request authenticated
    # (SigV4 or a bearer API key made with ``outcrop keys``/``outcrop api-keys``) and authorized.
    auth_mode: str = "open"
    catalog: CatalogExtras = field(default_factory=CatalogExtras)
    # First match wins; anything unmatched is served by the builtin model.
    deployments: tuple[Deployment, ...] = ()
    routing: Routing = field(default_factory=Routing)
    # Metering (outcrop.metering): off only to measure its cost. ``[[prices]]``: on-demand prices that
    # override the shipped ones: model and region (globs), input/output/cache_read/cache_write in USD per
    # 1M tokens, effective_from (ISO-8601; default: always).
    metering: bool = True
    # When a usage event is durable before its invocation answers. "interval": written to the journal
    # (survives the server process's death, kill -9 included) and fsync'd every
    # ``metering_fsync_interval_ms`` (a machine crash loses at most that window); "always": fsync'd
    # first (survives a power cut; each answer waits for the disk).
    metering_fsync: str = "interval"
    metering_fsync_interval_ms: int = 100
    # Where the journal's events are stored into the database: "process", a child process per server
    # process (outcrop.metering.ingester), or "thread", a thread of the server process, which then shares
    # the GIL with the event loop.
    metering_ingest: str = "process"
    prices: tuple[dict[str, Any], ...] = ()
    # Hostile-input limits. A body over ``max_request_bytes`` is a 413 (refused from Content-Length before
    # it is read); request headers over ``max_header_bytes`` are refused by the HTTP server; a client has
    # ``header_read_timeout_seconds`` to send its headers and ``body_read_timeout_seconds`` its body.
    max_request_bytes: int = 25 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    header_read_timeout_seconds: float = 10.0
    body_read_timeout_seconds: float = 60.0
    # How long a server worker's event loop may hold the GIL while another of its threads (the metering
    # and database writers) waits for it; applied only by
    # ``outcrop serve``, never to a process that embeds outcrop. Python's 5 ms is the default: 0.5 ms
    # cost a CPU-bound worker 5-15% of its throughput and, once the startup heap was frozen, did not
    # lower the latency outcrop adds at c=16 in A/Bs (bench/README.md, runtime).
    switch_interval_ms: float = 5.0

    def deployment_for(self, region: str, model_id: str) -> Deployment:
        return next((d for d in self.deployments if d.matches(region, model_id)), BUILTIN)

    def deployments_for(self, region: str, model_id: str) -> tuple[Deployment, ...]:
        """The first matching entry and every later entry with the same ``region`` and ``model`` globs
        (a pool of backends for one pair); the builtin model when nothing matches."""
        first = self.deployment_for(region, model_id)
        if first is BUILTIN:
            return (BUILTIN,)
        return tuple(d for d in self.deployments if (d.region, d.model) == (first.region, first.model))

    @property
    def worker_processes(self) -> int:
        """``workers``, or (0) one per core this process may run on, up to ``DEFAULT_WORKERS_CAP``."""
        return self.workers or max(1, min(usable_cores(), DEFAULT_WORKERS_CAP))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'outcrop.db'}"

    def with_overrides(self, **overrides: Any) -> Config:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


_ENV = {
    "OUTCROP_HOST": ("host", str),
    "OUTCROP_PORT": ("port", int),
    "OUTCROP_DATA_DIR": ("data_dir", Path),
    "OUTCROP_DATABASE_URL": ("database_url", str),
    "OUTCROP_WORKERS": ("workers", int),
    "OUTCROP_DEFAULT_ACCOUNT": ("default_account", str),
    "OUTCROP_DEFAULT_REGION": ("default_region", str),
    "OUTCROP_APPLICATION_PROFILE_QUOTA": ("application_profile_quota", int),
    "OUTCROP_LOG_FORMAT": ("log_format", str),
    "OUTCROP_LOG_LEVEL": ("log_level", str),
    "OUTCROP_AUTH_MODE": ("auth_mode", str),
    "OUTCROP_METERING": ("metering", lambda v: v.lower() not in ("0", "off", "false", "no")),
    "OUTCROP_METERING_FSYNC": ("metering_fsync", str),
    "OUTCROP_METERING_FSYNC_INTERVAL_MS": ("metering_fsync_interval_ms", int),
    "OUTCROP_METERING_INGEST": ("metering_ingest", str),
    "OUTCROP_SWITCH_INTERVAL_MS": ("switch_interval_ms", float),
    "OUTCROP_MAX_REQUEST_BYTES": ("max_request_bytes", int),
    "OUTCROP_MAX_HEADER_BYTES": ("max_header_bytes", int),
    "OUTCROP_HEADER_READ_TIMEOUT_SECONDS": ("header_read_timeout_seconds", float),
    "OUTCROP_BODY_READ_TIMEOUT_SECONDS": ("body_read_timeout_seconds", float),
}


_SCALARS: dict[str, tuple[type, ...]] = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,),
                                         "Path": (str,)}


def _typed(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` for ``cls``'s fields, each of its field's TOML type (an integer serves for a float);
    anything else is a ConfigError naming the setting (a string where a number belongs used to crash
    later, comparing the two)."""
    kinds = {f.name: str(f.type) for f in fields(cls)}
    for key, value in values.items():
        kind = kinds.get(key)
        if kind is None:
            continue  # the dataclass itself refuses an unknown name
        base = kind.removesuffix(" | None")
        allowed = _SCALARS.get(base)
        if allowed is None or (base != kind and value is None):
            continue
        if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
            expected = {"bool": "true or false", "int": "an integer", "float": "a number"}.get(base, "a string")
            raise ConfigError(f"{where}: {key} = {value!r} must be {expected}")
    return values


def _from_file(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path} does not exist") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    known = {f.name for f in fields(Config)}
    out: dict[str, Any] = {}
    server = raw.pop("server", {})
    for key, value in {**server, **raw}.items():
        if key == "catalog":
            out["catalog"] = CatalogExtras(
                models=tuple(value.get("models", ())), profiles=tuple(value.get("profiles", ()))
            )
        elif key == "deployments":
            try:
                out["deployments"] = tuple(
                    Deployment(**_typed(Deployment, d, f"config file {path}: [[deployments]]")) for d in value)
            except TypeError as e:
                raise ConfigError(f"config file {path}: [[deployments]]: {e}") from e
        elif key == "routing":
            try:
                out["routing"] = Routing(**_typed(Routing, value, f"config file {path}: [routing]"))
            except TypeError as e:
                raise ConfigError(f"config file {path}: [routing]: {e}") from e
        elif key == "prices":
            out["prices"] = tuple(dict(p) for p in value)
        elif key == "accounts":
            out["accounts"] = {str(k): str(v) for k, v in value.items()}
        elif key in known:
            _typed(Config, {key: value}, f"config file {path}")
            out[key] = Path(value) if key == "data_dir" else value
        else:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
    return out


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Build the configuration: defaults, then the file, then the environment, then ``overrides``."""
    values: dict[str, Any] = {}
    path = path or os.environ.get("OUTCROP_CONFIG")
    if path:
        values.update(_from_file(Path(path)))
    for env, (name, kind) in _ENV.items():
        if env in os.environ:
            try:
                values[name] = kind(os.environ[env])
            except ValueError as e:
                raise ConfigError(f"{env}={os.environ[env]!r}: {e}") from e
    config = Config(**values).with_overrides(**overrides)
    _check(config)
    return config


def _check(config: Config) -> None:
    if not (0 <= config.port < 65536):
        raise ConfigError(f"port {config.port} is not a TCP port")
    if config.application_profile_quota < 0:
        raise ConfigError("application_profile_quota must be zero or more")
    for key, account in config.accounts.items():
        if not (len(account) == 12 and account.isdigit()):
            raise ConfigError(f"accounts: {key} maps to {account!r}, which is not a 12-digit account ID")
    r = config.routing
    if r.strategy not in STRATEGIES:
        raise ConfigError(f"routing: strategy {r.strategy!r} is not one of {', '.join(STRATEGIES)}")
    if min(r.max_wait_ms, r.max_waiting, r.breaker_cooldown_ms) < 0 or r.total_timeout_ms <= 0 \
            or r.breaker_failures < 1:
        raise ConfigError("routing: waits and counts must be 0 or more, total_timeout_ms and breaker_failures 1 or more")
    for d in config.deployments:
        if min(d.max_concurrency, d.rpm, d.tpm) < 0:
            raise ConfigError(f"deployments: the capacity of {d.region}/{d.model} must be 0 (unlimited) or more")
        if d.backend not in BACKENDS:
            raise ConfigError(f"deployments: backend {d.backend!r} is not one of {', '.join(BACKENDS)}")
        if d.backend == "bedrock" and not d.api_key and not (d.aws_access_key_id and d.aws_secret_access_key):
            raise ConfigError(f"deployments: the bedrock deployment for {d.region}/{d.model} needs credentials: "
                              "aws_access_key_id and aws_secret_access_key, or api_key (a Bedrock API key)")
        if d.backend == "openai" and not d.url:
            raise ConfigError(f"deployments: the openai deployment for {d.region}/{d.model} needs a url")
    if config.max_request_bytes < 1:
        raise ConfigError("max_request_bytes must be 1 or more")
    if config.max_header_bytes < MIN_HEADER_BYTES:
        raise ConfigError(f"max_header_bytes must be {MIN_HEADER_BYTES} or more")
    if config.header_read_timeout_seconds <= 0 or config.body_read_timeout_seconds <= 0:
        raise ConfigError("header_read_timeout_seconds and body_read_timeout_seconds must be more than 0")
    if config.auth_mode not in ("open", "strict"):
        raise ConfigError(f"auth_mode must be 'open' or 'strict', not {config.auth_mode!r}")
    from outcrop.metering.prices import PriceError, parse_rule

    for rule in config.prices:
        try:
            parse_rule(rule)
        except PriceError as e:
            raise ConfigError(f"prices: {e}") from e
    if config.metering_fsync not in ("interval", "always"):
        raise ConfigError(f"metering_fsync must be 'interval' or 'always', not {config.metering_fsync!r}")
    if not (1 <= config.metering_fsync_interval_ms <= 60_000):
        raise ConfigError("metering_fsync_interval_ms must be between 1 and 60000")
    if config.metering_ingest not in ("process", "thread"):
        raise ConfigError(f"metering_ingest must be 'process' or 'thread', not {config.metering_ingest!r}")
    if not (0.01 <= config.switch_interval_ms <= 100):
        raise ConfigError("switch_interval_ms must be between 0.01 and 100")
    if not 0 <= config.workers <= MAX_WORKERS:
        raise ConfigError(f"workers must be from 1 to {MAX_WORKERS}, or 0 for one per core, not {config.workers}")
    if config.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {config.log_level!r}")
    if config.log_format not in ("text", "json"):
        raise ConfigError("log_format must be 'text' or 'json'")
    if config.database_url:
        # Any other SQLAlchemy URL would fail later, at start, with a driver's ImportError and a traceback.
        # (Only the scheme is named: the rest of a URL may hold a password.)
        scheme = config.database_url.split("://", 1)[0] if "://" in config.database_url else ""
        if scheme.partition("+")[0] not in ("sqlite", "postgresql", "postgres"):
            raise ConfigError(f"database_url must be sqlite:///PATH or postgresql://…, not "
                              f"{scheme + '://…' if scheme else 'a URL without a scheme'}")
