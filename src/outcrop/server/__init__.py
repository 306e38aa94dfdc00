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

One worker runs in this process; several are uvicorn's supervisor and its worker processes, which share
the listening socket, and which it restarts should one die.
"""

from __future__ import annotations

import functools

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


def serve(config: Config) -> None:
    """Serve ``outcrop.app:factory`` (each worker builds its app from the environment) until stopped."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

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
        Multiprocess(server_config, sockets=[server_config.bind_socket()]).run()
        return
    server = uvicorn.Server(server_config)
    server.run()
    if not server.started:
        raise SystemExit(3)  # the app failed to start (its lifespan said why, in the log)
