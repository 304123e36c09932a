"""Real backing services for the test suite: PostgreSQL, an S3 server, a GCS emulator.

Everything here talks over real sockets; nothing is mocked. The pytest fixtures in
``conftest.py`` are thin wrappers around these helpers, so the helpers can also be
used from scripts or other test modules.

How the object-store emulators are reached from a *subprocess* (a step run via
``run_step``), using environment variables only (verified with s3fs 2026.9 /
botocore 1.43 and gcsfs 2026.10 / gcp-storage-emulator 2026.7):

S3 (``moto_server``)::

    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
    AWS_ENDPOINT_URL=http://127.0.0.1:<port>        # botocore >= 1.31 honours this
    AWS_ENDPOINT_URL_S3=http://127.0.0.1:<port>     # service-specific variant, same effect
    FSSPEC_S3_ENDPOINT_URL=http://127.0.0.1:<port>  # fsspec config; works even with old botocore

  Any one of the three endpoint variables alone is enough; all three are set so the
  result does not depend on the botocore version.

GCS (``gcp-storage-emulator``)::

    STORAGE_EMULATOR_HOST=http://127.0.0.1:<port>   # gcsfs sends JSON-API calls here
    FSSPEC_GCS_TOKEN=anon                           # never look up real Google credentials
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false

  The last one matters: since gcsfs 2025.x the default ``GCSFileSystem`` is the
  "extended" one, which probes each bucket's layout over gRPC. The emulator speaks no
  gRPC, and with ``token=anon`` that probe retries for 60 s per bucket before falling
  back. Turning the extension off makes gcsfs use the plain JSON API directly. The
  variable is read when ``gcsfs`` is imported, so it must be in the environment before
  the process starts (``conftest.py`` sets it for the test process itself).

  The emulator handles resumable uploads (``put_file`` of a > 10 MB file and
  multi-block ``open(..., "wb")`` writes round-trip byte-exact).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCALHOST = "127.0.0.1"

# Environment variables a step subprocess may inherit from the test process. Anything
# else (cloud credentials, database URLs, proxies) is dropped so that a test can only
# reach the services it was explicitly given.
INHERITED_ENV = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "SYSTEMROOT",
)


class ServiceUnavailable(RuntimeError):
    """A service cannot be provided on this machine (missing binary, no user, ...)."""


def free_port() -> int:
    """Return a TCP port that was free a moment ago on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def random_name(prefix: str) -> str:
    """Lower-case random name, valid as a bucket or database identifier."""
    return f"{prefix}{secrets.token_hex(6)}"


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``check`` until it returns True; fail early if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceUnavailable(
                f"{what} exited with code {proc.returncode} before it was ready" + _log_tail(log)
            )
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise ServiceUnavailable(f"{what} not ready after {timeout:.0f}s" + _log_tail(log))


def _log_tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- log tail ---\n" + "\n".join(text)


def http_ok(url: str) -> bool:
    """True if ``url`` answers with a 2xx status."""
    with urllib.request.urlopen(url, timeout=2) as resp:
        return 200 <= resp.status < 300


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Terminate a child we started, escalating to SIGKILL if it ignores SIGTERM."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# --------------------------------------------------------------------------- postgres


def plain_pg_url(url: str) -> str:
    """Drop a SQLAlchemy driver suffix (``postgresql+psycopg://``) so psycopg accepts it."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return scheme.split("+", 1)[0] + "://" + rest


def pg_url_with_db(url: str, dbname: str) -> str:
    """Same server and credentials as ``url``, different database."""
    parts = urllib.parse.urlsplit(plain_pg_url(url))
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


def pg_ready(url: str, timeout: float = 3) -> bool:
    """True if a PostgreSQL server at ``url`` accepts a connection and a query."""
    import psycopg

    try:
        with psycopg.connect(plain_pg_url(url), connect_timeout=int(timeout)) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def create_database(admin_url: str, prefix: str = "workers_t_") -> str:
    """Create a fresh empty database and return its URL."""
    import psycopg
    from psycopg import sql

    name = random_name(prefix)
    with psycopg.connect(plain_pg_url(admin_url), autocommit=True, connect_timeout=10) as conn:
        # template0 because CREATE DATABASE from template1 fails while anyone else is
        # connected to template1, which parallel tools (or a developer's psql) may be.
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(name)
            )
        )
    return pg_url_with_db(admin_url, name)


def drop_database(admin_url: str, db_url: str) -> None:
    """Drop the database named in ``db_url``, disconnecting anyone still using it."""
    import psycopg
    from psycopg import sql

    name = urllib.parse.urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(plain_pg_url(admin_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def find_pg_binary(name: str) -> str | None:
    """Locate a PostgreSQL server binary.

    Debian's ``postgresql`` package keeps ``initdb``/``pg_ctl`` out of PATH, under
    /usr/lib/postgresql/<major>/bin, so look there too (newest major first).
    """
    found = shutil.which(name)
    if found:
        return found

    def major(path: str) -> int:
        version = Path(path).parent.parent.name
        return int(version) if version.isdigit() else 0

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=major, reverse=True)
    return candidates[0] if candidates else None


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account to run the server as when we are root (postgres refuses root)."""
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


@dataclass
class PgCluster:
    """A throwaway PostgreSQL cluster in a temp dir, listening on 127.0.0.1 only."""

    root: Path
    port: int
    user: pwd.struct_passwd | None
    pg_ctl: str
    superuser: str = "postgres"
    password: str | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        login = f"{self.superuser}:{self.password}" if self.password else self.superuser
        return f"postgresql://{login}@{LOCALHOST}:{self.port}/postgres"

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        if self.user is not None:
            env["HOME"] = str(self.root)
        return subprocess.run(
            args,
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[arg-type]
        )

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={LOCALHOST}",
                f"-c unix_socket_directories={self.root}",
                # Durability is pointless for a cluster deleted at session end.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        ctl = [self.pg_ctl, "-D", str(self.datadir), "-l", str(self.log)]
        res = self._run([*ctl, "-w", "-t", "60", "-o", options, "start"], timeout=90)
        if res.returncode != 0:
            raise ServiceUnavailable(
                f"pg_ctl start failed ({res.returncode}): {res.stdout}{res.stderr}"
                + _log_tail(self.log)
            )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(
                [self.pg_ctl, "-D", str(self.datadir), "-m", "immediate", "-w", "stop"],
                timeout=60,
            )
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_pg_cluster(password: str | None = None) -> Iterator[PgCluster]:
    """Start a private cluster (superuser ``postgres``) and delete it after.

    Trust auth by default; with ``password``, every login over TCP needs a password
    (scram-sha-256) and the superuser's is ``password`` (``cluster.url`` carries it).
    """
    initdb = find_pg_binary("initdb")
    pg_ctl = find_pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise ServiceUnavailable("initdb/pg_ctl not found (install the postgresql package)")
    user = None
    if os.geteuid() == 0:
        user = _unprivileged_user()
        if user is None:
            raise ServiceUnavailable("running as root and no unprivileged user to run postgres")

    # Not under pytest's tmp_path: that is mode 0700 and owned by root, so the
    # unprivileged server could not reach its own data directory.
    root = Path(tempfile.mkdtemp(prefix="workers-pg-"))
    cluster = PgCluster(root=root, port=0, user=user, pg_ctl=pg_ctl, password=password)
    try:
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        init = [initdb, "-D", str(cluster.datadir), "-U", cluster.superuser]
        if password is None:
            init += ["-A", "trust"]
        else:
            pwfile = root / "pwfile"
            pwfile.write_text(password + "\n")
            if user is not None:
                os.chown(pwfile, user.pw_uid, user.pw_gid)
            # Local socket stays trusted (only pg_ctl uses it); TCP needs the password.
            init += ["--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={pwfile}"]
        res = cluster._run([*init, "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120)
        if res.returncode != 0:
            raise ServiceUnavailable(f"initdb failed ({res.returncode}): {res.stdout}{res.stderr}")
        # The port can be taken between free_port() and the server binding it.
        for attempt in range(3):
            cluster.port = free_port()
            try:
                cluster.start()
                break
            except ServiceUnavailable:
                if attempt == 2:
                    raise
        wait_until(lambda: pg_ready(cluster.url), timeout=30, what="postgres", log=cluster.log)
        yield cluster
    finally:
        cluster.stop()


# --------------------------------------------------------------------- object stores


@dataclass
class Server:
    """A running emulator subprocess."""

    name: str
    endpoint_url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def port(self) -> int:
        return int(urllib.parse.urlsplit(self.endpoint_url).port or 0)


@dataclass
class Store:
    """A fresh bucket on an emulator, as the library and its subprocesses see it.

    ``url`` is an fsspec URL (``s3://bucket-xxxx/run``); ``env`` holds the variables a
    subprocess needs to reach the emulator with that URL; ``storage_options`` are the
    equivalent explicit fsspec kwargs for in-process calls that accept them.
    """

    url: str
    bucket: str
    endpoint_url: str
    env: dict[str, str]
    storage_options: dict[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.url


@contextlib.contextmanager
def _server(name: str, args: list[str], probe: str, log_dir: Path) -> Iterator[Server]:
    log = log_dir / f"{name}.log"
    port = int(urllib.parse.urlsplit(probe).port or 0)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_scrubbed_env(),
            # Own process group so a Ctrl-C aimed at pytest is handled by our cleanup.
            start_new_session=True,
        )
    try:
        wait_until(lambda: http_ok(probe), timeout=60, what=name, proc=proc, log=log)
        yield Server(name=name, endpoint_url=f"http://{LOCALHOST}:{port}", proc=proc, log=log)
    finally:
        stop_process(proc)


@contextlib.contextmanager
def moto_server(log_dir: Path) -> Iterator[Server]:
    """moto's standalone S3-compatible server on a free loopback port."""
    port = free_port()
    args = [sys.executable, "-m", "moto.server", "-H", LOCALHOST, "-p", str(port)]
    with _server("moto_server", args, f"http://{LOCALHOST}:{port}/", log_dir) as srv:
        yield srv


@contextlib.contextmanager
def gcs_emulator(log_dir: Path) -> Iterator[Server]:
    """gcp-storage-emulator (JSON API, in memory) on a free loopback port."""
    port = free_port()
    args = [sys.executable, "-m", "gcp_storage_emulator", "start"]
    args += ["--host", LOCALHOST, "--port", str(port), "--in-memory", "--quiet"]
    probe = f"http://{LOCALHOST}:{port}/storage/v1/b?project=test"
    with _server("gcp-storage-emulator", args, probe, log_dir) as srv:
        yield srv


def s3_env(endpoint_url: str) -> dict[str, str]:
    """Environment that points boto/s3fs at ``endpoint_url`` with dummy credentials."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ENDPOINT_URL_S3": endpoint_url,
        "FSSPEC_S3_ENDPOINT_URL": endpoint_url,
        # No instance-metadata lookups for credentials: there is no EC2 here.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def gcs_env(endpoint_url: str) -> dict[str, str]:
    """Environment that points gcsfs at the emulator, anonymously (see module doc)."""
    return {
        "STORAGE_EMULATOR_HOST": endpoint_url,
        "FSSPEC_GCS_TOKEN": "anon",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }


def _s3_admin(endpoint_url: str) -> Any:
    import s3fs

    # Explicit arguments and no instance cache: bucket setup must not depend on, or
    # leak into, the environment-driven configuration that the tests exercise. No
    # region here: s3fs would send it as a LocationConstraint, which moto rejects for
    # us-east-1 exactly like AWS does.
    return s3fs.S3FileSystem(
        key="testing", secret="testing", endpoint_url=endpoint_url, skip_instance_cache=True
    )


def s3_create_bucket(endpoint_url: str, bucket: str) -> None:
    _s3_admin(endpoint_url).mkdir(bucket)


def s3_delete_bucket(endpoint_url: str, bucket: str) -> None:
    _s3_admin(endpoint_url).rm(bucket, recursive=True)


def gcs_create_bucket(endpoint_url: str, bucket: str) -> None:
    # Plain JSON-API call: the emulator needs no auth, and this keeps bucket setup
    # independent of gcsfs' own behaviour, which is what the tests are exercising.
    req = urllib.request.Request(
        f"{endpoint_url}/storage/v1/b?project=test",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status >= 300:
            raise RuntimeError(f"creating gs://{bucket} failed: HTTP {resp.status}")


def gcs_delete_bucket(endpoint_url: str, bucket: str) -> None:
    # The emulator refuses to delete a non-empty bucket, so empty it first.
    base = f"{endpoint_url}/storage/v1/b/{bucket}"
    with urllib.request.urlopen(f"{base}/o", timeout=10) as resp:
        items = json.load(resp).get("items", [])
    for item in items:
        name = urllib.parse.quote(item["name"], safe="")
        urllib.request.urlopen(
            urllib.request.Request(f"{base}/o/{name}", method="DELETE"), timeout=10
        ).close()
    urllib.request.urlopen(urllib.request.Request(base, method="DELETE"), timeout=10).close()


# ----------------------------------------------------------------------- subprocesses


def _scrubbed_env() -> dict[str, str]:
    return {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}


def step_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a step subprocess: PATH & locale from here, services from ``extra``.

    ``HOME`` is a private empty directory so that ~/.aws, ~/.config/gcloud and the like
    on a developer machine can never leak real credentials into a test.
    """
    home.mkdir(parents=True, exist_ok=True)
    env = _scrubbed_env()
    env.update(
        {
            "HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_CONFIG_FILE": str(home / "aws-config-absent"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials-absent"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    if extra:
        env.update(extra)
    return env


def run_step(
    step: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
    cwd: Path | str | None = None,
    home: Path | None = None,
    preexec_fn: Callable[[], Any] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m workers.<step> *args`` with a controlled environment.

    ``preexec_fn`` runs in the child before the step starts (e.g. to set a resource limit).
    Never raises on a non-zero exit: exit codes are part of the contract under test.
    """
    with contextlib.ExitStack() as stack:
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="workers-home-")))
        return subprocess.run(
            [sys.executable, "-m", f"workers.{step}", *args],
            env=step_env(home, env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
            preexec_fn=preexec_fn,
        )
