"""outcrop.expiring: an entry is good for ttl seconds from when its reading began, forget drops it at once,
and past the limit everything is dropped."""

from __future__ import annotations

from outcrop.expiring import Expiring


def test_an_entry_lasts_ttl_seconds_from_when_its_reading_began():
    cache: Expiring[str, int] = Expiring(ttl=1.0)
    cache.put("a", 1, read_at=10.0)
    assert cache.get("a", 10.99) == 1
    assert cache.get("a", 11.0) is None
    assert cache.get("b", 10.0) is None


def test_forget_drops_an_entry_at_once():
    cache: Expiring[str, int] = Expiring(ttl=60)
    cache.put("a", 1, read_at=0.0)
    cache.forget("a")
    cache.forget("never-there")
    assert cache.get("a", 0.0) is None


def test_past_the_limit_everything_is_dropped():
    cache: Expiring[int, int] = Expiring(ttl=60, limit=3)
    for key in range(3):
        cache.put(key, key, read_at=0.0)
    cache.put(3, 3, read_at=0.0)
    assert [cache.get(k, 0.0) for k in range(4)] == [None, None, None, 3]
