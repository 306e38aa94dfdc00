"""``outcrop.server``: a listening socket per worker, and the supervisor keeping one worker on each."""

from __future__ import annotations

import socket
import weakref

import pytest

from outcrop.server import _OwnSockets, listening_sockets


class _Worker:
    """What the supervisor's chooser reads of a worker process."""

    def __init__(self) -> None:
        self.exitcode: int | None = None


def _supervisor(count: int) -> _OwnSockets:
    supervisor = object.__new__(_OwnSockets)  # no uvicorn init: it would take this process's signals
    supervisor._all = [f"socket {i}" for i in range(count)]  # type: ignore[list-item]
    supervisor._held = weakref.WeakKeyDictionary()
    supervisor._pending = None
    supervisor.processes = []
    return supervisor


def _start(supervisor: _OwnSockets, at: int | None = None) -> str:
    """Start a worker as uvicorn does: read ``sockets``, make the process, then put it in its place."""
    (chosen,) = supervisor.sockets
    worker = _Worker()
    if at is None:
        supervisor.processes.append(worker)
    else:
        supervisor.processes[at] = worker
    return chosen  # type: ignore[return-value]


def _holders(supervisor: _OwnSockets) -> list[str]:
    supervisor.sockets  # noqa: B018 - settles who holds what, as the next start would
    supervisor._pending = None
    return sorted(supervisor._all[supervisor._held[p]] for p in supervisor.processes if p.exitcode is None)


def test_each_socket_keeps_one_worker_whatever_order_workers_die_in():
    supervisor = _supervisor(3)
    assert [_start(supervisor) for _ in range(3)] == ["socket 0", "socket 1", "socket 2"]
    # Workers 0 and 1 die; the supervisor replaces 1 first (its loop was there when 0 died).
    supervisor.processes[0].exitcode = -9
    supervisor.processes[1].exitcode = -9
    _start(supervisor, at=1)
    _start(supervisor, at=0)
    assert _holders(supervisor) == ["socket 0", "socket 1", "socket 2"]
    supervisor.processes[2].exitcode = 1
    assert _start(supervisor, at=2) == "socket 2"
    assert _holders(supervisor) == ["socket 0", "socket 1", "socket 2"]


def test_changing_the_workers_while_running_is_refused(caplog):
    supervisor = _supervisor(2)
    for _ in range(2):
        _start(supervisor)
    for signal_name in ("hup", "ttin", "ttou"):
        getattr(supervisor, f"handle_{signal_name}")()
    assert len(supervisor.processes) == 2
    assert "does not change its workers" in caplog.text


def test_the_port_of_a_running_server_is_refused_not_shared():
    first = listening_sockets("127.0.0.1", 0, 2, 16)
    try:
        port = first[0].getsockname()[1]
        assert {s.getsockname()[1] for s in first} == {port}
        with pytest.raises(OSError, match="in use"):
            listening_sockets("127.0.0.1", port, 2, 16)
    finally:
        for s in first:
            s.close()


def test_two_servers_starting_on_one_port_at_once_are_not_both_let_through():
    """The probe that refuses a port in use is closed before the shared sockets are bound: a second server
    probing in that moment got through, and the two shared the port."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    starting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    starting.bind(f"\0outcrop-port:127.0.0.1:{port}")  # what the other server holds from its probe on
    try:
        with pytest.raises(OSError, match="in use"):
            listening_sockets("127.0.0.1", port, 2, 16)
    finally:
        starting.close()
    sockets = listening_sockets("127.0.0.1", port, 2, 16)  # once it is gone, the port is this server's
    for s in sockets:
        s.close()


def test_ipv6_hosts_get_ipv6_sockets():
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    try:
        sockets = listening_sockets("::1", 0, 2, 16)
    except OSError as e:
        pytest.skip(f"::1 cannot be bound here: {e}")
    try:
        assert all(s.family == socket.AF_INET6 for s in sockets)
    finally:
        for s in sockets:
            s.close()


def test_where_the_port_guard_cannot_be_taken_the_server_starts_without_it(monkeypatch):
    """Abstract Unix sockets are Linux's: on macOS the guard is skipped, never a failed start."""
    import outcrop.server as server

    monkeypatch.setattr(server.sys, "platform", "darwin")
    sockets = listening_sockets("127.0.0.1", 0, 2, 16)
    try:
        port = sockets[0].getsockname()[1]
        assert ("127.0.0.1", port) not in server._PORTS_HELD
    finally:
        for s in sockets:
            s.close()
