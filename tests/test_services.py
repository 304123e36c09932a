"""Smoke tests for the service fixtures themselves: each one is real and reachable.

If these fail, every other failure in the run is suspect; fix these first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import fsspec
import psycopg
import pytest
import services
from services import Store


def test_pg_db_is_fresh_and_answers(pg_url: str, pg_db: str) -> None:
    parts = urllib.parse.urlsplit(pg_db)
    assert parts.scheme == "postgresql"
    assert parts.path.startswith("/workers_t_")
    with psycopg.connect(pg_db) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_database()").fetchone() == (parts.path[1:],)
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)


def test_pg_db_is_dropped_afterwards(pg_url: str) -> None:
    url = services.create_database(pg_url)
    services.drop_database(pg_url, url)
    name = urllib.parse.urlsplit(url).path[1:]
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is None


def test_pg_url_is_not_an_unrequested_server(pg_url: str) -> None:
    # The suite must not pick up whatever listens on 5432 unless told to.
    if not os.environ.get("WORKERS_TEST_DATABASE_URL"):
        assert urllib.parse.urlsplit(pg_url).port != 5432


def test_sqlite_url(sqlite_url: str, tmp_path: Path) -> None:
    assert sqlite_url == f"sqlite:///{tmp_path}/workers.db"


def test_db_url_variants(db_url: str, request: pytest.FixtureRequest) -> None:
    expected = "sqlite" if request.node.callspec.params["db_url"] == "sqlite" else "postgresql"
    assert db_url.split(":", 1)[0] == expected


def test_postgres_mark_applied(request: pytest.FixtureRequest, db_url: str) -> None:
    marked = request.node.get_closest_marker("postgres") is not None
    assert marked == db_url.startswith("postgresql")


def _roundtrip_in_subprocess(store: Store, tmp_path: Path) -> dict[str, object]:
    """Write, read and list through fsspec in a fresh interpreter given only env vars."""
    script = textwrap.dedent(
        """
        import json, os, sys
        import fsspec
        url, big = sys.argv[1], sys.argv[2]
        with fsspec.open(url + "/sub/hello.txt", "w") as f:
            f.write("hello from a subprocess")
        with fsspec.open(url + "/sub/hello.txt") as f:
            text = f.read().decode()
        fs, path = fsspec.core.url_to_fs(url)
        fs.put_file(big, path + "/big.bin")
        same = fs.cat_file(path + "/big.bin") == open(big, "rb").read()
        print(json.dumps({"text": text, "ls": sorted(fs.find(path)), "big_ok": same}))
        """
    )
    big = tmp_path / "big.bin"
    # > 10 MB so gcsfs/s3fs switch to resumable / multipart uploads.
    big.write_bytes(os.urandom(11 * 2**20 + 7))
    env = services.step_env(tmp_path / "home", store.env)
    res = subprocess.run(
        [sys.executable, "-c", script, store.url, str(big)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


@pytest.mark.parametrize("store_fixture", ["s3_store", "gcs_store"])
def test_store_in_process(store_fixture: str, request: pytest.FixtureRequest) -> None:
    store: Store = request.getfixturevalue(store_fixture)
    with fsspec.open(f"{store.url}/x.txt", "w") as f:
        f.write("in process")
    with fsspec.open(f"{store.url}/x.txt") as f:
        assert f.read() == b"in process"
    fs, path = fsspec.core.url_to_fs(store.url, **store.storage_options)
    assert fs.cat_file(path + "/x.txt") == b"in process"


@pytest.mark.slow
@pytest.mark.parametrize("store_fixture", ["s3_store", "gcs_store"])
def test_store_from_subprocess_env_only(
    store_fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store: Store = request.getfixturevalue(store_fixture)
    out = _roundtrip_in_subprocess(store, tmp_path)
    assert out["text"] == "hello from a subprocess"
    assert out["big_ok"] is True
    assert out["ls"] == [f"{store.bucket}/run/big.bin", f"{store.bucket}/run/sub/hello.txt"]


def test_store_buckets_are_isolated(s3_store: Store, gcs_store: Store) -> None:
    fs = fsspec.filesystem("s3")
    assert fs.ls(s3_store.bucket) == []
    assert fsspec.filesystem("gcs").ls(gcs_store.bucket) == []


def test_step_env_is_scrubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    monkeypatch.setenv("WORKERS_TEST_DATABASE_URL", "postgresql://nope")
    env = services.step_env(tmp_path / "home", {"EXTRA": "1"})
    assert "real-secret" not in env.values()
    assert "WORKERS_TEST_DATABASE_URL" not in env
    assert env["EXTRA"] == "1"
    assert env["PATH"] == os.environ["PATH"]


def test_run_step_runs_a_module(run_step, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # No step modules exist in this branch's skeleton; a missing module still proves the
    # command line, interpreter and environment plumbing.
    res = run_step("definitely_not_a_step", "--x", env={"A": "b"}, input="", timeout=60)
    assert res.returncode != 0
    assert "workers" in res.stderr
    assert isinstance(res.stdout, str)


def test_jq(jq: str) -> None:
    res = subprocess.run(
        [jq, "-c", ".a"], input='{"a": [1, 2]}', capture_output=True, text=True, check=True
    )
    assert res.stdout.strip() == "[1,2]"
