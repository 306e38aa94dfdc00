"""Reports for people: ``outcrop usage`` and ``outcrop costs`` as a table (with totals), JSON or CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

USAGE_COLUMNS = ("invocations", "inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens",
                 "clientErrors", "serverErrors", "throttles", "costUsd")
COST_COLUMNS = ("invocations", "inputTokens", "outputTokens", "costUsd")


def render(report: dict[str, Any], fmt: str, costs: bool = False) -> str:
    if fmt == "json":
        return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    keys = (["period"] if report["granularity"] else []) + list(report["groupBy"])
    metrics = COST_COLUMNS if costs else USAGE_COLUMNS
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*keys, *metrics])
        for row in report["rows"]:
            writer.writerow([_blank(row.get(k)) for k in keys]
                            + [f"{row[m]:.12f}" if m == "costUsd" else row[m] for m in metrics])
        return out.getvalue()
    return _table(report, keys, metrics)


def _blank(value: Any) -> str:
    return "" if value is None else str(value)


def _cell(name: str, value: Any) -> str:
    if name == "costUsd":
        return f"${value:,.6f}"
    if isinstance(value, int):
        return f"{value:,}"
    if name.startswith("tag:") and value is None:
        return "(untagged)"
    if name.startswith("metadata:") and value is None:
        return "(none)"
    if name == "profile":
        return "(direct)" if value is None else str(value).split(":", 5)[-1]
    if name == "period" and isinstance(value, str):
        return value.replace("T00:00:00Z", "").replace(":00Z", "Z")
    return _blank(value)


def _table(report: dict[str, Any], keys: list[str], metrics: tuple[str, ...]) -> str:
    headers = [*keys, *metrics]
    body = [[_cell(k, row.get(k)) for k in keys] + [_cell(m, row[m]) for m in metrics] for row in report["rows"]]
    total = ["TOTAL"] + [""] * (len(keys) - 1) if keys else []
    totals = total + [_cell(m, report["totals"][m]) for m in metrics]
    widths = [max(len(h), *(len(r[i]) for r in [*body, totals])) for i, h in enumerate(headers)]
    numeric = [False] * len(keys) + [True] * len(metrics)

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    title = f"Usage of account {report.get('account', '')} from {report['since']} to {report['until']}".replace(
        "account  ", "")
    return "\n".join([title, "", line(headers), rule, *(line(r) for r in body), rule, line(totals)]) + "\n"
