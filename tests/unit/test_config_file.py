"""The config file: a setting of the wrong TOML type is a ConfigError naming it, not a crash later on."""

from __future__ import annotations

from pathlib import Path

import pytest

from outcrop.config import ConfigError, load_config


@pytest.mark.parametrize(("text", "message"), [
    ('port = "abc"', "port = 'abc' must be an integer"),
    ('workers = "2"', "workers = '2' must be an integer"),
    ("metering = 1", "metering = 1 must be true or false"),
    ("port = true", "port = True must be an integer"),
    ("[routing]\nmax_wait_ms = 1.5", "[routing]: max_wait_ms = 1.5 must be an integer"),
    ('[[deployments]]\nmodel = "*"\nbackend = "openai"\nurl = "http://x"\ntimeout_seconds = "30"',
     "[[deployments]]: timeout_seconds = '30' must be a number"),
    ('[[deployments]]\nmodel = 5', "[[deployments]]: model = 5 must be a string"),
])
def test_a_setting_of_the_wrong_type_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    # Before: port = "abc" crashed with TypeError ('<=' not supported between 'int' and 'str').
    path = tmp_path / "outcrop.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).endswith(message)


def test_an_integer_serves_where_a_number_is_asked_and_optional_settings_take_their_type(tmp_path: Path) -> None:
    path = tmp_path / "outcrop.toml"
    path.write_text('port = 9000\nheader_read_timeout_seconds = 5\n[[deployments]]\nmodel = "*"\nbackend = "openai"\n'
                    'url = "http://x"\ntimeout_seconds = 30\napi_key = "k"\n')
    config = load_config(path)
    assert config.port == 9000 and config.header_read_timeout_seconds == 5
    assert config.deployments[0].timeout_seconds == 30 and config.deployments[0].api_key == "k"


@pytest.mark.parametrize("url", ["mysql://outcrop:secret@db/outcrop", "garbage", "mssql+pyodbc://u:p@h/d"])
def test_a_database_of_another_kind_is_refused_before_start_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(database_url=url)
    assert str(e.value).startswith("database_url must be sqlite:///PATH or postgresql://")
    assert "secret" not in str(e.value) and ":p@" not in str(e.value)


@pytest.mark.parametrize("url", ["sqlite:///x.db", "sqlite+pysqlite:///x.db", "postgresql://u@h/d", "postgres://u@h/d",
                                 "postgresql+psycopg://u@h/d"])
def test_sqlite_and_postgresql_urls_are_taken(url: str) -> None:
    assert load_config(database_url=url).database_url == url


@pytest.mark.parametrize(("cores", "workers", "expected"), [(1, 0, 1), (2, 0, 2), (32, 0, 8), (32, 12, 12), (2, 5, 5)])
def test_workers_default_to_one_per_core_up_to_eight(monkeypatch: pytest.MonkeyPatch, cores: int, workers: int,
                                                     expected: int) -> None:
    from outcrop.config import Config

    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cores)))
    assert Config(workers=workers).worker_processes == expected


@pytest.mark.parametrize("workers", [-1, 65])
def test_workers_out_of_range_are_refused(tmp_path: Path, workers: int) -> None:
    path = tmp_path / "outcrop.toml"
    path.write_text(f"workers = {workers}\n")
    with pytest.raises(ConfigError, match="workers must be from 1 to 64, or 0 for one per core"):
        load_config(path)
