"""``outcrop serve``'s HTTP server: uvicorn on uvloop, with outcrop's own HTTP/1.1 protocol (``http1``, on
httptools) and h2c on the same port.

Why uvicorn (and not granian, which served outcrop before): the whole request runs on the event loop's
thread. Under granian each request and each answer crossed between its Rust threads and the Python
thread, each crossing a wake-up waiting for a core: ~130 µs more CPU per invocation, and in a same-run
A/B at 16 concurrent invocations +3.35 ms added at p50 against +0.90 ms (``bench/README.md``, runtime).
uvicorn runs the sockets, the workers, signals, graceful shutdown and the lifespan; each connection is
``http1.HTTP1``, which replaced uvicorn's own request cycle (~10% of the event loop's CPU per invocation,
``http1``'s notes). What granian did besides, outcrop does here: h2c with prior knowledge (``h2c``, on the
``h2`` library; uvicorn's own HTTP/2 needs ``zttp``, at 0.0.x when this was written), and the header size
limit and header read timeout (``http1``).

One worker runs in this process; several are uvicorn's supervisor and its worker processes, which it
restarts should one die. Each worker listens on a socket of its own, all bound to the port with
``SO_REUSEPORT``, so that the kernel spreads new connections over the workers by a hash of their
addresses. On one shared socket, whichever worker woke first took every connection waiting: of 16
opened at once, one worker held 14 to 16 (``bench/README.md``, runtime), and the other cores did little.
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
import sys
import weakref
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from outcrop.config import Config
from outcrop.server.http1 import HTTP1, Limits

KEEP_ALIVE_SECONDS = 60  # an idle keep-alive connection (HTTP/1.1 or h2c) is closed after this
GRACEFUL_SHUTDOWN_SECONDS = 10  # on SIGTERM, answers in flight (streams too) get this long to finish


def limits(config: Config) -> Limits:
    return Limits(
        max_header_bytes=config.max_header_bytes,
        header_read_timeout=config.header_read_timeout_seconds,
        keep_alive_timeout=KEEP_ALIVE_SECONDS,
    )


def serve(config: Config, announce: Callable[[int], None] = lambda port: None) -> None:
    """Serve ``outcrop.app:factory`` (each worker builds its app from the environment) until stopped;
    ``announce`` is told the port, once it is bound (the one the kernel chose, for port 0 with workers)."""
    server_config = uvicorn.Config(
        "outcrop.app:factory",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.worker_processes,
        loop="uvloop",
        http=functools.partial(HTTP1, limits=limits(config)),  # type: ignore[arg-type]
        ws="none",
        lifespan="on",
        interface="asgi3",
        access_log=False,
        proxy_headers=False,  # X-Forwarded-* are not trusted, and nothing here uses the client's address
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_config=None,  # its loggers go through outcrop's handler (outcrop.logs)
        log_level=config.log_level.lower(),
    )
    if config.worker_processes > 1:
        sockets = listening_sockets(config.host, config.port, config.worker_processes, server_config.backlog)
        announce(sockets[0].getsockname()[1])
        _OwnSockets(server_config, sockets).run()
        return
    announce(config.port)  # port 0: uvicorn logs the one it binds
    server = uvicorn.Server(server_config)
    server.run()
    if not server.started:
        raise SystemExit(3)  # the app failed to start (its lifespan said why, in the log)


def listening_sockets(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """``count`` sockets listening on ``host``:``port`` together (``SO_REUSEPORT``).

    The port is first bound alone, without the option, so that a port another server holds (outcrop
    included, whose sockets have the option) is refused as it would be with one socket, not shared."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]  # port 0: the one the kernel chose, for every socket
        # Between this probe and the binds below, another outcrop starting on the same port at the same
        # moment would pass its probe too, and the two would share the port: a name held for this
        # server's life (an abstract socket: gone with the process) lets only one through.
        _hold_port(host, port)
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.set_inheritable(True)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


_PORTS_HELD: dict[tuple[str, int], socket.socket] = {}


def _hold_port(host: str, port: int) -> None:
    """Best effort: abstract Unix sockets are Linux's; elsewhere the probe alone guards the port."""
    if (host, port) in _PORTS_HELD or not sys.platform.startswith("linux"):
        return
    guard = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        guard.bind(f"\0outcrop-port:{host}:{port}")
    except OSError as e:
        guard.close()
        if e.errno == errno.EADDRINUSE:
            raise OSError(errno.EADDRINUSE, f"Address already in use: another outcrop is starting on {host}:{port}") from None
        logging.getLogger("outcrop").warning("the port guard could not be taken (%s); starting without it", e)
        return
    _PORTS_HELD[(host, port)] = guard


class _OwnSockets(Multiprocess):
    """uvicorn's supervisor, handing each worker it starts the socket that has no live worker (at start,
    each in turn; a worker that died, its socket). Each socket keeps exactly one worker, whichever order
    workers die and are replaced in. uvicorn's SIGHUP (restart all), SIGTTIN and SIGTTOU (one worker more
    or fewer) are refused: they would leave a socket with two workers and another with none."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self._all = sockets
        self._held: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._pending: int | None = None
        super().__init__(config, sockets)

    @property  # type: ignore[override]
    def sockets(self) -> list[socket.socket]:
        """Read by the supervisor once per worker it starts, just before starting it (and the worker it
        started is in ``processes`` by the next time)."""
        processes = getattr(self, "processes", [])
        if self._pending is not None:
            for process in processes:
                if process not in self._held:
                    self._held[process] = self._pending
            self._pending = None
        live = [0] * len(self._all)
        for process in processes:
            if process.exitcode is None and process in self._held:
                live[self._held[process]] += 1
        self._pending = live.index(min(live))
        return [self._all[self._pending]]

    @sockets.setter
    def sockets(self, value: list[socket.socket]) -> None:
        self._all = value

    def _refuse(self) -> None:
        logging.getLogger("uvicorn.error").warning(
            "outcrop serve does not change its workers while it runs; restart it to change them"
        )

    handle_hup = handle_ttin = handle_ttou = _refuse
