"""Session fixtures for real backing services (see ``tests/services.py`` for the details).

Fixtures
--------
``pg_url`` (session)
    Admin URL of a PostgreSQL server: ``$WORKERS_TEST_DATABASE_URL`` if set, else a
    throwaway cluster started with initdb/pg_ctl on a free port. A server that merely
    happens to run on 5432 is never used unless the variable names it.
``pg_db`` (function)
    ``postgresql://user@host:port/workers_t_<random>``: a fresh database, dropped after.
``sqlite_url`` (function)
    ``sqlite:////<tmp_path>/workers.db``.
``db_url`` (function, parametrized ``sqlite`` / ``postgres``)
    One of the two above; the postgres case is only set up when it runs.
``s3_server`` / ``gcs_server`` (session)
    ``services.Server`` with ``endpoint_url``, for moto_server / gcp-storage-emulator.
``s3_store`` / ``gcs_store`` (function)
    ``services.Store``: ``.url`` (``s3://bucket-<rand>/run``), ``.env`` (variables a
    subprocess needs), ``.storage_options``. The same variables are also applied to
    this process for the duration of the test, so in-process fsspec calls work too.
``run_step`` (function)
    ``run_step(step, *args, env=None, input=None, timeout=120, cwd=None, preexec_fn=None)`` runs
    ``python -m workers.<step>`` with a scrubbed environment plus ``env``.
``jq`` (session)
    Path of the jq binary.

Markers ``postgres``/``s3``/``gcs`` are added automatically at collection time to every
test that uses the matching fixtures (including the ``postgres`` case of ``db_url``),
so ``-m "not postgres"`` and friends work without tests marking themselves.

When a service cannot be provided the test is skipped, except under ``CI=true``, where
it fails: CI must never go green by skipping the interesting half of the suite.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NoReturn

import pytest

# tests/ has no __init__.py on purpose: pytest's default "prepend" import mode then puts
# this directory on sys.path, so helpers import as plain ``services`` from any cwd.
import services
from services import Server, ServiceUnavailable, Store

# gcsfs reads this when it is first imported; it must be set before any test (or the
# library under test) imports it, or in-process GCS calls stall on a gRPC probe.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

IN_CI = os.environ.get("CI", "").lower() == "true"

# Writes and prints the reliability suite's figures (tests/reliability_figures.py).
pytest_plugins = ["reliability_figures"]

_FIXTURE_MARKS = {
    "pg_url": "postgres",
    "pg_db": "postgres",
    "s3_server": "s3",
    "s3_store": "s3",
    "gcs_server": "gcs",
    "gcs_store": "gcs",
}


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # `timeout`, CI runners and IDEs stop a run with SIGTERM, which by default kills
    # Python without running fixture teardown, leaving the daemonized throwaway
    # postgres and the emulators running. As KeyboardInterrupt, teardown still runs.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail in CI: the one way a test of this suite may skip itself
    (tests/test_ci_honesty.py holds every module to it)."""
    if IN_CI:
        pytest.fail(f"required test service unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@functools.cache
def _bwrap_works() -> tuple[bool, str]:
    from argo_local.pods import sandbox

    return sandbox.bwrap_works()


def pytest_runtest_setup(item: pytest.Item) -> None:
    # The bwrap case of runner_helpers.MODES (and any test marked bwrap) stays collected where
    # bubblewrap cannot create namespaces, so that CI fails on it instead of losing it.
    if item.get_closest_marker("bwrap") is not None:
        ok, why = _bwrap_works()
        if not ok:
            unavailable(f"--sandbox bwrap: {why}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Done at collection (not inside the fixtures) so that -m selection sees the marks.
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        marks = {mark for fixture, mark in _FIXTURE_MARKS.items() if fixture in names}
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("db_url") == "postgres":
            marks.add("postgres")
        for mark in sorted(marks):
            item.add_marker(getattr(pytest.mark, mark))


# ------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[postgres]')")
    configured = os.environ.get("WORKERS_TEST_DATABASE_URL")
    if configured:
        if not services.pg_ready(configured, timeout=10):
            # Explicitly configured but dead is a broken setup, not a missing service.
            pytest.fail(
                f"WORKERS_TEST_DATABASE_URL={configured} does not accept connections",
                pytrace=False,
            )
        yield services.plain_pg_url(configured)
        return
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(services.throwaway_pg_cluster())
        except ServiceUnavailable as exc:
            reason = str(exc)
        else:
            reason = ""
        # Outside the except block, so the report is not a chained traceback.
        if reason:
            unavailable(f"no PostgreSQL: set WORKERS_TEST_DATABASE_URL or install it ({reason})")
        yield cluster.url


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[str]:
    url = services.create_database(pg_url)
    try:
        yield url
    finally:
        services.drop_database(pg_url, url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'workers.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    # getfixturevalue, not a fixture argument, so sqlite-only runs never need postgres.
    name = "sqlite_url" if request.param == "sqlite" else "pg_db"
    return str(request.getfixturevalue(name))


# --------------------------------------------------------------------- object stores


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(services.moto_server(tmp_path_factory.mktemp("moto")))
        except (ServiceUnavailable, OSError) as exc:
            reason = str(exc)
        else:
            reason = ""
        if reason:
            unavailable(f"moto_server could not start (pip install 'moto[server]'): {reason}")
        yield server


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(services.gcs_emulator(tmp_path_factory.mktemp("gcs")))
        except (ServiceUnavailable, OSError) as exc:
            reason = str(exc)
        else:
            reason = ""
        if reason:
            unavailable(f"gcp-storage-emulator could not start: {reason}")
        yield server


def _apply_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str], protocol: str) -> None:
    import fsspec.config

    # A developer's own cloud session must not mix with the emulator's dummy keys.
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # fsspec turns FSSPEC_* variables into config only at import, which has happened
    # already in this process; mirror them into the live config instead. The config is
    # looked up per protocol alias of the class, so "gcs" also covers gs:// URLs.
    prefix = f"FSSPEC_{protocol.upper()}_"
    conf = {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix)}
    monkeypatch.setitem(fsspec.config.conf, protocol, conf)


def _clear_instance_cache(cls_path: str) -> None:
    # fsspec caches filesystem objects by constructor args, not by environment, so an
    # instance built in an earlier test could still point at other settings.
    module, _, name = cls_path.rpartition(".")
    try:
        cls = getattr(__import__(module, fromlist=[name]), name)
    except ImportError:
        return
    cls.clear_instance_cache()


@pytest.fixture
def s3_store(s3_server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    bucket = services.random_name("bucket-")
    services.s3_create_bucket(s3_server.endpoint_url, bucket)
    env = services.s3_env(s3_server.endpoint_url)
    _apply_env(monkeypatch, env, "s3")
    _clear_instance_cache("s3fs.S3FileSystem")
    store = Store(
        url=f"s3://{bucket}/run",
        bucket=bucket,
        endpoint_url=s3_server.endpoint_url,
        env=env,
        storage_options={
            "key": "testing",
            "secret": "testing",
            "endpoint_url": s3_server.endpoint_url,
        },
    )
    yield store
    _clear_instance_cache("s3fs.S3FileSystem")
    # Best effort: moto keeps everything in memory for the whole session.
    with contextlib.suppress(Exception):
        services.s3_delete_bucket(s3_server.endpoint_url, bucket)


@pytest.fixture
def gcs_store(gcs_server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    bucket = services.random_name("bucket-")
    services.gcs_create_bucket(gcs_server.endpoint_url, bucket)
    env = services.gcs_env(gcs_server.endpoint_url)
    _apply_env(monkeypatch, env, "gcs")
    _clear_instance_cache("gcsfs.GCSFileSystem")
    store = Store(
        url=f"gs://{bucket}/run",
        bucket=bucket,
        endpoint_url=gcs_server.endpoint_url,
        env=env,
        storage_options={"token": "anon", "endpoint_url": gcs_server.endpoint_url},
    )
    yield store
    _clear_instance_cache("gcsfs.GCSFileSystem")
    with contextlib.suppress(Exception):
        services.gcs_delete_bucket(gcs_server.endpoint_url, bucket)


# ----------------------------------------------------------------------- subprocesses


@pytest.fixture
def run_step(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    # services.run_step with this test's private HOME; every other argument passes through.
    return functools.partial(services.run_step, home=tmp_path / "home")


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool not found on PATH (apt-get install prometheus)")
    return path


@pytest.fixture(scope="session")
def jq() -> str:
    path = shutil.which("jq")
    if path is None:
        unavailable("jq not found on PATH (apt-get install jq)")
    return path


# ----------------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium (Debian's package), for pages the tests render and look at."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is not None:
            return path
    unavailable("chromium not found on PATH (apt-get install chromium)")
