"""Start and stop the servers under test, each on a free loopback port, each in its own process group."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import asgi_command

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MAIN_PYTHON = REPO / ".venv" / "bin" / "python"
PEERS_VENV = HERE.parent / ".venv-peers"
PG_ADMIN_URL = os.environ.get("OUTCROP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
# Quota high enough that no benchmark cell ever meets it (the default is 1,000 per account and Region).
QUOTA = "1000000000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One running server: ``name`` as printed in the tables, ``pid`` its process-group leader."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    health_path: str = "/"
    database_url: str | None = None
    pythonpath: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def wait_ready(self, timeout: float = 60.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
                conn.request("GET", self.health_path)
                status = conn.getresponse().status
                conn.close()
                if status < 500:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        """The process and all its descendants (its workers, outcrop's metering ingester)."""
        return descendants(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass


def _spawn(name: str, cmd: list[str], env: dict[str, str], workdir: Path, port: int, health: str) -> Server:
    log_path = workdir / f"{name.replace(' ', '_').replace('/', '_')}-{port}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; closed when we exit
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=workdir
    )
    return Server(name=name, port=port, proc=proc, log_path=log_path, health_path=health).wait_ready()


def start_outcrop(
    database_url: str, workdir: Path, label: str, source: Path | None = None, args: list[str] | None = None
) -> Server:
    """``outcrop serve`` as users run it; ``source`` is a directory holding the ``outcrop`` package to use
    instead of the one installed in .venv (a snapshot of a commit)."""
    port = free_port()
    # One worker unless ``args`` say otherwise, as the figures recorded in bench/README.md were measured.
    cmd = [str(MAIN_PYTHON), "-m", "outcrop", "serve", "--port", str(port), "--database", database_url, "--workers", "1",
           *(args or [])]
    env = {"OUTCROP_DATA_DIR": str(workdir), "OUTCROP_APPLICATION_PROFILE_QUOTA": QUOTA}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    server = _spawn(f"outcrop/{label}", cmd, env, workdir, port, "/_outcrop/health")
    server.database_url = database_url
    server.pythonpath = env.get("PYTHONPATH")
    return server


def start_bare(workdir: Path, workers: int = 1) -> Server:
    """The bare callable under the same server as ``outcrop serve`` (uvicorn, uvloop, httptools)."""
    port = free_port()
    cmd = asgi_command(MAIN_PYTHON, "bare:app", port, workers)
    env = {"PYTHONPATH": str(HERE)}
    return _spawn("bare ASGI", cmd, env, workdir, port, "/")


def start_ministack(workdir: Path) -> Server:
    """ministack as its ``ministack`` command starts it (hypercorn, in memory), bound to loopback."""
    port = free_port()
    cmd = [str(PEERS_VENV / "bin" / "ministack")]
    env = {"GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1", "TMPDIR": str(workdir)}
    return _spawn("ministack", cmd, env, workdir, port, "/_ministack/health")


def ensure_ministack() -> str:
    """Install ministack into bench/.venv-peers when it is missing; return its version."""
    exe = PEERS_VENV / "bin" / "ministack"
    if not exe.exists():
        print("installing ministack into bench/.venv-peers ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run(
            [str(PEERS_VENV / "bin" / "pip"), "install", "-q", "ministack==1.5.33"], check=True
        )
    out = subprocess.run(
        [str(PEERS_VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('ministack'))"],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def snapshot_source(commit: str, into: Path) -> tuple[Path, str]:
    """Export ``src/`` of ``commit`` into ``into``; return the directory to put on sys.path and the commit."""
    into.mkdir(parents=True, exist_ok=True)
    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", commit], capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src", rev


# -- PostgreSQL scratch databases ------------------------------------------------------------------------
def pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return None
    except Exception as e:  # any failure means: no usable server
        return f"{type(e).__name__}: {e}"


def create_pg_database() -> str:
    import psycopg

    name = "outcrop_bench_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_settings() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    return (
        f"PostgreSQL {version[0] if version else '?'} (fsync={fsync[0] if fsync else '?'}, "
        f"synchronous_commit={sync[0] if sync else '?'})"
    )


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc (a server's workers, outcrop's metering ingesters)."""
    pids = [pid]
    i = 0
    while i < len(pids):
        try:
            children = Path(f"/proc/{pids[i]}/task/{pids[i]}/children").read_text().split()
        except OSError:
            children = []
        pids.extend(int(c) for c in children)
        i += 1
    return pids
