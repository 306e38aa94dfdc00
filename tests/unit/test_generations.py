"""``outcrop.generations``: counters shared through a mapped file by the workers of one server."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from outcrop.generations import CHAOS, PROFILES, TAGS, Generations, Watch


def test_a_bump_through_one_mapping_is_seen_through_another(tmp_path: Path):
    a, b = Generations(tmp_path / "generations"), Generations(tmp_path / "generations")
    watch = Watch(b, PROFILES)
    assert not watch.changed()
    a.bump(PROFILES)
    assert watch.changed()
    assert not watch.changed()  # once per change
    assert (b[PROFILES], b[TAGS], b[CHAOS]) == (1, 0, 0)
    a.close()
    b.close()


def test_a_new_mapping_keeps_the_counts(tmp_path: Path):
    a = Generations(tmp_path / "generations")
    a.bump(TAGS)
    a.bump(TAGS)
    b = Generations(tmp_path / "generations")  # a worker starting later (or restarted)
    assert b[TAGS] == 2
    a.close()
    b.close()


def _bump_many(path: str, times: int) -> None:
    g = Generations(Path(path))
    for _ in range(times):
        g.bump(CHAOS)
    g.close()


def test_bumps_from_processes_at_once_all_count(tmp_path: Path):
    path = str(tmp_path / "generations")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_bump_many, args=(path, 300)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert all(w.exitcode == 0 for w in workers)
    g = Generations(Path(path))
    assert g[CHAOS] == 1200
    g.close()


def test_without_a_file_the_counters_live_in_memory():
    g = Generations()
    watch = Watch(g, CHAOS)
    g.bump(CHAOS)
    assert watch.changed() and g[CHAOS] == 1


def test_the_shared_file_has_its_blocks_reserved_and_only_grows(tmp_path):
    """A store into a mapped hole on a full disk is SIGBUS: the blocks are reserved when it is opened.
    A process opening it later keeps what others wrote."""
    import os

    from outcrop.mapped import open_mapped

    path = tmp_path / "shared"
    fd, mapped = open_mapped(path, 8192)
    mapped[0:4] = b"kept"
    assert os.fstat(fd).st_blocks * 512 >= 8192  # not a sparse file
    fd2, again = open_mapped(path, 4096)
    assert again[0:4] == b"kept" and os.fstat(fd2).st_size == 8192
    for m, f in ((mapped, fd), (again, fd2)):
        m.close()
        os.close(f)
