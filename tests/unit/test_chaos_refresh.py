"""Chaos rules set through another server on the same database reach this one by a refresh in the
background: an invocation never waits for a refresh, only for the first read."""

from __future__ import annotations

import asyncio

from outcrop.runtime.chaos import REFRESH_SECONDS, Chaos
from outcrop.store.engine import Store


def test_a_refresh_never_holds_an_invocation(store: Store) -> None:
    async def scenario() -> None:
        now = [0.0]
        here, elsewhere = Chaos(clock=lambda: now[0]), Chaos()
        here.attach(store)
        elsewhere.attach(store)
        assert await here.rules() == ()  # the first read is waited for
        assert here._reads_started == 1
        rule = await elsewhere.add({"region": "*", "fault": "throttle"})

        now[0] += REFRESH_SECONDS / 2
        assert await here.rules() == () and here._reads_started == 1  # cached: no read at all

        now[0] += REFRESH_SECONDS
        assert await here.rules() == ()  # due: the read starts, and this call goes on with what it has
        loading = here._loading
        assert loading is not None and not loading.done()
        assert await here.rules() == () and here._loading is loading  # one read at a time
        await loading
        assert [r.id for r in await here.rules()] == [rule.id]  # the next call has the new rules
        assert here._reads_started == 2

    asyncio.run(scenario())
