"""Identities in the store and the ``outcrop keys`` / ``outcrop api-keys`` commands."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from outcrop.auth.identities import Identities, IdentityError, api_key_hash
from outcrop.cli import main
from outcrop.store.engine import Store
from outcrop.store.schema import access_keys, api_keys


def test_access_key_round_trip(store):
    identities = Identities(store)
    created = identities.create_access_key("111122223333")
    assert created["accessKeyId"].startswith("AKIA") and len(created["accessKeyId"]) == 20
    assert len(created["secretAccessKey"]) == 40
    identity, secret = asyncio.run(identities.access_key(created["accessKeyId"]))
    assert secret == created["secretAccessKey"]
    assert identity.account == "111122223333" and identity.policy is None
    assert identity.principal_arn == "arn:aws:iam::111122223333:root"


def test_access_key_with_policy_acts_as_a_user(store):
    identities = Identities(store)
    created = identities.create_access_key("111122223333", '{"Statement":[]}', "alice")
    identity, _ = asyncio.run(identities.access_key(created["accessKeyId"]))
    assert identity.principal_arn == "arn:aws:iam::111122223333:user/alice"
    assert identity.policy == '{"Statement":[]}'


def test_deleted_access_key_is_gone(store):
    identities = Identities(store)
    created = identities.create_access_key("111122223333")
    assert identities.delete_access_key(created["accessKeyId"]) is True
    assert asyncio.run(identities.access_key(created["accessKeyId"])) is None
    assert identities.delete_access_key(created["accessKeyId"]) is False


def test_api_key_is_stored_only_as_its_hash(store):
    identities = Identities(store)
    created = identities.create_api_key("111122223333")
    api_key = created["apiKey"]
    assert api_key.startswith("ABSK")
    assert base64.b64decode(api_key[4:]).decode().startswith(f"BedrockAPIKey-{created['apiKeyId']}-at-111122223333:")
    rows = store.read_sync(lambda c: [dict(r) for r in c.execute(select(api_keys)).mappings()])
    assert rows[0]["key_hash"] == api_key_hash(api_key)
    assert api_key not in json.dumps(rows)
    assert asyncio.run(identities.api_key(api_key)).account == "111122223333"
    assert asyncio.run(identities.api_key(api_key + "x")) is None


def test_listings_never_show_secrets(store):
    identities = Identities(store)
    key = identities.create_access_key("111122223333")
    api = identities.create_api_key("444455556666")
    listed = json.dumps([identities.list_access_keys(), identities.list_api_keys()])
    assert key["secretAccessKey"] not in listed and api["apiKey"] not in listed
    assert identities.list_access_keys("444455556666") == []
    assert [k["apiKeyId"] for k in identities.list_api_keys("444455556666")] == [api["apiKeyId"]]


@pytest.mark.parametrize(("account", "name"), [("12345", None), ("12345678901a", None), ("111122223333", "bad name/x")])
def test_refuses_bad_account_or_user_name(store, account, name):
    with pytest.raises(IdentityError):
        Identities(store).create_access_key(account, None, name)


def test_sqlite_database_is_created_owner_only(store, tmp_path):
    db = tmp_path / "db" / "outcrop.db"
    Identities(store).create_access_key("111122223333")
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for extra in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        if extra.exists():
            assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0


def test_lookup_is_a_point_read(store):
    """Not a timing assertion: records what one lookup costs, for the report (-s shows it)."""
    identities = Identities(store)
    created = identities.create_access_key("111122223333")

    async def many() -> float:
        start = time.perf_counter()
        for _ in range(2000):
            await identities.access_key(created["accessKeyId"])
        return (time.perf_counter() - start) / 2000

    print(f"access-key lookup: {asyncio.run(many()) * 1e6:.1f} µs")


# ------------------------------------------------------------------------------------------------ CLI
def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_keys_create_list_delete(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out, _ = run_cli(capsys, "keys", "create", "--account", "111122223333", "--database", url)
    assert code == 0
    created = json.loads(out)
    assert set(created) == {"accessKeyId", "secretAccessKey", "account"} and created["account"] == "111122223333"
    code, out, _ = run_cli(capsys, "keys", "list", "--database", url)
    assert code == 0 and [k["accessKeyId"] for k in json.loads(out)] == [created["accessKeyId"]]
    assert created["secretAccessKey"] not in out
    code, out, _ = run_cli(capsys, "keys", "delete", created["accessKeyId"], "--database", url)
    assert code == 0
    code, _, err = run_cli(capsys, "keys", "delete", created["accessKeyId"], "--database", url)
    assert code == 1 and "no such key" in err


def test_cli_api_keys_create_list_delete(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out, _ = run_cli(capsys, "api-keys", "create", "--account", "111122223333", "--database", url)
    created = json.loads(out)
    assert code == 0 and created["apiKey"].startswith("ABSK") and created["account"] == "111122223333"
    code, out, _ = run_cli(capsys, "api-keys", "list", "--database", url)
    assert created["apiKey"] not in out and json.loads(out)[0]["apiKeyId"] == created["apiKeyId"]
    assert run_cli(capsys, "api-keys", "delete", created["apiKeyId"], "--database", url)[0] == 0


def test_cli_stores_a_checked_policy(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "bedrock:List*", "Resource": "*"}]}))
    code, _, _ = run_cli(capsys, "keys", "create", "--account", "111122223333", "--policy", str(policy),
                           "--user-name", "alice", "--database", url)
    assert code == 0
    store = Store(url)
    try:
        row = store.read_sync(lambda c: c.execute(select(access_keys)).mappings().one())
    finally:
        store.close()
    assert row["user_name"] == "alice" and json.loads(row["policy"])["Statement"][0]["Action"] == "bedrock:List*"


def test_cli_refuses_an_invalid_policy(tmp_path, capsys):
    policy = tmp_path / "policy.json"
    policy.write_text('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*"}]}')
    code, _, err = run_cli(capsys, "keys", "create", "--account", "111122223333", "--policy", str(policy),
                           "--database", f"sqlite:///{tmp_path / 'cli.db'}")
    assert code == 2 and "Resource" in err


def test_cli_refuses_a_policy_file_that_is_not_text(tmp_path, capsys):
    policy = tmp_path / "policy.json"
    policy.write_bytes(b'\xff\xfe{"Version": "2012-10-17"}')
    code, _, err = run_cli(capsys, "keys", "create", "--account", "111122223333", "--policy", str(policy),
                           "--database", f"sqlite:///{tmp_path / 'cli.db'}")
    assert code == 2 and f"policy {policy}: " in err and "decode" in err


def test_cli_reports_a_database_directory_it_cannot_make(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run_cli(capsys, "keys", "list", "--database", f"sqlite:///{blocker / 'sub' / 'x.db'}")
    assert code == 2 and err.startswith("outcrop: ") and str(blocker) in err and "Traceback" not in err


def test_cli_refuses_a_bad_account(tmp_path, capsys):
    code, _, err = run_cli(capsys, "api-keys", "create", "--account", "1", "--database", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 2 and "12-digit" in err


def test_cli_defaults_to_the_database_serve_uses(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OUTCROP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OUTCROP_DATABASE_URL", raising=False)
    monkeypatch.delenv("OUTCROP_CONFIG", raising=False)
    assert run_cli(capsys, "keys", "create", "--account", "111122223333")[0] == 0
    assert (tmp_path / "data" / "outcrop.db").exists()
