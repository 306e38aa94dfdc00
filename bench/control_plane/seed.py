"""Putting profiles in place: direct inserts into outcrop's schema, and plain HTTP calls for the rest."""

from __future__ import annotations

import http.client
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from load import COPY_FROM, authorization

ACCOUNT = "123456789012"  # outcrop's default account: AKIDEXAMPLE is not mapped to another one
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def seed_outcrop(database_url: str, region: str, count: int, start_index: int) -> None:
    """Insert ``count`` application profiles (and bump the per-account count) straight into the database.

    Rows look exactly like the ones CreateInferenceProfile writes; ``created_us`` increases with the
    index so the List order is the insertion order.
    """
    from sqlalchemy import create_engine, insert, select, update

    from outcrop.store.engine import Store, normalize_url
    from outcrop.store.schema import inference_profiles, profile_counts

    store = Store(database_url)
    try:
        store.migrate()
    finally:
        store.close()
    engine = create_engine(normalize_url(database_url))
    model_arn = COPY_FROM.replace("us-east-1", region)
    base_us = 1_700_000_000_000_000
    try:
        with engine.begin() as conn:
            for lo in range(start_index, start_index + count, 10_000):
                hi = min(lo + 10_000, start_index + count)
                rows = [
                    {
                        "account": ACCOUNT,
                        "region": region,
                        "profile_id": "".join(secrets.choice(ID_ALPHABET) for _ in range(12)),
                        "name": f"seed-{i:07d}",
                        "description": f"seeded profile {i}",
                        "models": json.dumps([model_arn]),
                        "source_arn": model_arn,
                        "created_us": base_us + i * 1000,
                        "updated_us": base_us + i * 1000,
                    }
                    for i in range(lo, hi)
                ]
                conn.execute(insert(inference_profiles), rows)
            c = profile_counts.c
            have = conn.execute(select(c.n).where(c.account == ACCOUNT, c.region == region)).scalar()
            if have is None:
                conn.execute(insert(profile_counts).values(account=ACCOUNT, region=region, n=count))
            else:
                conn.execute(
                    update(profile_counts)
                    .where(c.account == ACCOUNT, c.region == region)
                    .values(n=c.n + count)
                )
    finally:
        engine.dispose()


class Client:
    """A keep-alive HTTP/1.1 connection speaking the bedrock rest-json wire, enough for set-up."""

    def __init__(self, host: str, region: str) -> None:
        name, port = host.split(":")
        self.conn = http.client.HTTPConnection(name, int(port), timeout=120)
        self.headers = {"Authorization": authorization(region), "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=payload, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} -> {response.status}: {data[:500]!r}")
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    def create(self, name: str) -> str:
        """Create one application profile; return its ID (the last segment of its ARN)."""
        out = self.call(
            "POST", "/inference-profiles", {"inferenceProfileName": name, "modelSource": {"copyFrom": COPY_FROM}}
        )
        arn = out.get("inferenceProfileArn") or out.get("InferenceProfileArn") or ""
        return str(arn).rsplit("/", 1)[1]

    def close(self) -> None:
        self.conn.close()


def create_over_http(host: str, region: str, count: int, prefix: str, workers: int = 8) -> list[str]:
    """Create ``count`` profiles through the wire with ``workers`` connections; return their IDs."""

    def part(w: int) -> list[str]:
        client = Client(host, region)
        try:
            return [client.create(f"{prefix}-{w}-{i}") for i in range(w, count, workers)]
        finally:
            client.close()

    with ThreadPoolExecutor(workers) as pool:
        return [pid for ids in pool.map(part, range(workers)) for pid in ids]


def list_path(page_size: int, token: str | None = None) -> str:
    # ``type`` is the wire name of typeEquals (what botocore sends); ministack reads ``typeEquals``, and
    # outcrop ignores query keys outside the model, so one path serves both.
    path = f"/inference-profiles?type=APPLICATION&typeEquals=APPLICATION&maxResults={page_size}"
    return path + (f"&nextToken={quote(token, safe='')}" if token else "")


def token_at_page(host: str, region: str, page_size: int, pages: int) -> tuple[str | None, float]:
    """Walk ``pages`` pages of the APPLICATION list; return the nextToken then and the seconds it took."""
    client = Client(host, region)
    token: str | None = None
    started = time.perf_counter()
    try:
        for _ in range(pages):
            out = client.call("GET", list_path(page_size, token))
            token = out.get("nextToken")
            if token is None:
                break
    finally:
        client.close()
    return token, time.perf_counter() - started
