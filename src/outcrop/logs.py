"""Logging for ``outcrop serve``: ``log_level`` and ``log_format`` (``text``, or ``json``: one object a line).

The HTTP server's own loggers (``uvicorn.*``) go through the same handler, so a log collector sees one
format. Each worker process sets this up for itself (``outcrop.app.factory``).
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JSONFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"[, "exception"]}``, time in RFC 3339 UTC."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(level: str = "info", fmt: str = "text") -> None:
    """One stderr handler on the root logger, replacing any earlier one of ours."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_outcrop", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._outcrop = True  # type: ignore[attr-defined]
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
