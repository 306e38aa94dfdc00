"""Answering a future from another thread's result, once its loop runs the callback."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any


def settle(future: asyncio.Future[Any] | concurrent.futures.Future[Any], value: Any, error: BaseException | None) -> None:
    """Set the result (or the error) unless the future is already done: its waiter was cancelled."""
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
