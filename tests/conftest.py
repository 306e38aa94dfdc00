"""Shared fixtures: a real outcrop server process on an ephemeral port, real AWS clients, both databases.

``server`` starts ``outcrop serve`` as a subprocess (the same entry point users run) and waits for
``/_outcrop/health``. ``database_url`` is parametrized over SQLite and PostgreSQL; the PostgreSQL case
uses a fresh database on the local server (127.0.0.1:5432, trust auth) and is skipped, saying why, where
no such server runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig

PG_ADMIN_URL = os.environ.get("OUTCROP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# Never let a test client reach a real AWS endpoint or the instance metadata service.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ["AWS_CONFIG_FILE"] = "/dev/null"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_BEARER_TOKEN_BEDROCK"):
    os.environ.pop(_var, None)

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("postgresql://", "postgresql://", 1), connect_timeout=2):
            return None
    except Exception as e:  # any failure means: no usable server here
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({type(e).__name__}: {e})"


_PG_REASON: str | bool | None = False


def pg_skip_reason() -> str | None:
    global _PG_REASON
    if _PG_REASON is False:
        _PG_REASON = _pg_available()
    return _PG_REASON  # type: ignore[return-value]


def fresh_pg_database() -> str:
    """Create an empty database on the local server and return its URL."""
    import psycopg

    name = "outcrop_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'outcrop.db'}"
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    return fresh_pg_database()


@dataclass
class ServerProcess:
    """A running ``outcrop serve``; ``restart``/``kill`` keep the same port and database."""

    database_url: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    config_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # Extra ``outcrop serve`` arguments, e.g. ``["--auth", "strict"]``.
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    killed: bool = False  # a stop that had to SIGKILL the server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        # One worker unless a test asks for more (``--workers`` or its own OUTCROP_WORKERS): a test that reads
        # a worker's own state (breakers, caches) must find it on the worker it calls.
        env = {**os.environ, "OUTCROP_DATA_DIR": str(self.data_dir), "OUTCROP_WORKERS": "1", **self.extra_env}
        cmd = [sys.executable, "-m", "outcrop", "serve", "--port", str(self.port), "--database", self.database_url]
        if self.config_file is not None:
            cmd += ["--config", str(self.config_file)]
        cmd += self.args
        log = open(self.data_dir / f"server-{self.port}.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"outcrop exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/_outcrop/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"outcrop did not become healthy: {self.log_text()[-3000:]}")

    def wait_for_workers(self, workers: int, timeout: float = 60.0) -> None:
        """Wait until ``workers`` server processes are up (each holds its metering journal's lock file): the
        server answers as soon as one is, and a test about several must not run on the first alone."""
        journals = self.data_dir / "metering"
        deadline = time.monotonic() + timeout
        while len(list(journals.glob("*.lock"))) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers did not start: {self.log_text()[-3000:]}")
            time.sleep(0.05)

    def log_text(self) -> str:
        path = self.data_dir / f"server-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, and the time a graceful stop may take (answers in flight 10 s, then the ingester's
        last events); SIGKILL past that, which ``killed`` records for the test's messages."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.killed = True
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def kill9(self) -> None:
        """``kill -9`` the whole server (its process group: the main process and its workers)."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def client(self, service: str = "bedrock", region: str = "us-east-1", access_key: str = ACCESS_KEY,
               **kwargs: Any) -> Any:
        return make_client(self.url, service, region, access_key, **kwargs)


def make_client(endpoint: str, service: str = "bedrock", region: str = "us-east-1",
                access_key: str = ACCESS_KEY, validate: bool = True, retries: int = 0) -> Any:
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=SECRET_KEY,
        config=BotoConfig(
            parameter_validation=validate,
            retries={"total_max_attempts": retries + 1, "mode": "standard"},
            read_timeout=60,
            connect_timeout=5,
        ),
    )


@contextmanager
def running_server(data_dir: Path, config: str | None = None, args: Sequence[str] = (),
                   **env: str) -> Iterator[ServerProcess]:
    """A server on SQLite in ``data_dir`` (``config`` as its TOML file), stopped on leaving: for a module's
    one shared server (``with running_server(tmp_path_factory.mktemp(...)) as srv: yield srv``)."""
    config_file = None
    if config is not None:
        config_file = data_dir / "outcrop.toml"
        config_file.write_text(config)
    srv = ServerProcess(database_url=f"sqlite:///{data_dir / 'outcrop.db'}", data_dir=data_dir,
                        config_file=config_file, extra_env=env, args=list(args))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def make(database_url: str | None = None, config: str | None = None, args: list[str] | None = None,
             **env: str) -> ServerProcess:
        data_dir = tmp_path / f"srv{len(started)}"
        data_dir.mkdir()
        config_file = None
        if config is not None:
            config_file = data_dir / "outcrop.toml"
            config_file.write_text(config)
        proc = ServerProcess(
            database_url=database_url or f"sqlite:///{data_dir / 'outcrop.db'}",
            data_dir=data_dir,
            config_file=config_file,
            extra_env=env,
            args=list(args or ()),
        )
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess], database_url: str) -> ServerProcess:
    """A fresh server on SQLite and on PostgreSQL (parametrized)."""
    return server_factory(database_url)


@pytest.fixture
def bedrock(server: ServerProcess) -> Any:
    return server.client("bedrock")
