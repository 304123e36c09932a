"""Exit codes: every cause in ``workers.failures.CAUSES`` provoked for real, through the steps.

Each case runs a step as a subprocess against a real server (a PostgreSQL cluster with
password logins, moto's S3 server with IAM auth switched on, the GCS emulator, local
HTTP servers answering 503, read-only and full tmpfs mounts, an address-space limit)
and asserts the exit code, the cause and a fragment of the one error line, with no
traceback and no secret anywhere in the output.

SQLSTATEs a test cannot cause cheaply on a real server (a full server disk, a deadlock,
a crash restart) are raised by the server itself from a view calling ``RAISE ... USING
ERRCODE``: the client sees exactly what the real fault sends, a SQLSTATE on an error.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import services
from conftest import unavailable
from pipeline_helpers import RunStep, error_of
from reliability_helpers import STEP_PYTHONPATH

from workers import exitcodes, failures

ROOT = Path(__file__).resolve().parent.parent

SUPER_PW = "Super-Canary-7731"
APP_PW = "App-Canary-4410"
READER_PW = "Reader-Canary-2208"
LIMITED_PW = "Limited-Canary-9150"
WRONG_PW = "Wrong-Canary-6602"
S3_BAD_SECRET = "S3-Canary-Secret-5521"
SECRETS = (SUPER_PW, APP_PW, READER_PW, LIMITED_PW, WRONG_PW, S3_BAD_SECRET)

INJECTED_SQLSTATES = {
    # SQLSTATE: the cause it must map to
    "40001": "overloaded",  # serialization failure
    "40P01": "overloaded",  # deadlock detected
    "53100": "no-space",  # the server's disk is full
    "53200": "overloaded",  # the server is out of memory
    "55P03": "overloaded",  # lock not available
    "57P02": "server-shutdown",  # crash shutdown
    "57P03": "server-shutdown",  # cannot connect now (starting up)
    "08006": "unreachable",  # connection failure
    "58030": "unreachable",  # the server's I/O failed
    "28000": "db-auth",  # invalid authorization specification
    "3D000": "db-unknown",  # invalid catalog name
    "42P01": "db-unknown",  # undefined table
    "42703": "db-unknown",  # undefined column
    "22P02": "db-unknown",  # invalid text representation: data the table does not fit
    "42501": "db-permission",  # insufficient privilege
    "25006": "db-permission",  # read-only transaction (a standby)
}


# ----------------------------------------------------------------------------- servers


@dataclass
class PwCluster:
    """A throwaway cluster with scram-sha-256 logins, roles and a database to misuse."""

    host: str
    port: int

    def url(self, user: str = "app", password: str | None = APP_PW, db: str = "appdb") -> str:
        login = f"{user}:{password}" if password is not None else user
        return f"postgresql://{login}@{self.host}:{self.port}/{db}"


@pytest.fixture(scope="module")
def pw_cluster() -> Iterator[PwCluster]:
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed")
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(services.throwaway_pg_cluster(password=SUPER_PW))
        except services.ServiceUnavailable as exc:
            reason = str(exc)
        else:
            reason = ""
        if reason:
            unavailable(f"cannot start a PostgreSQL cluster with password auth: {reason}")
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE app LOGIN PASSWORD '{APP_PW}'")
            conn.execute(f"CREATE ROLE reader LOGIN PASSWORD '{READER_PW}'")
            conn.execute(f"CREATE ROLE limited LOGIN PASSWORD '{LIMITED_PW}' CONNECTION LIMIT 0")
            conn.execute("CREATE DATABASE appdb OWNER app")
        app_admin = services.pg_url_with_db(cluster.url, "appdb")
        with psycopg.connect(app_admin, autocommit=True) as conn:
            conn.execute("SET ROLE app")
            conn.execute(
                "CREATE TABLE workers_rows (run_id text NOT NULL, key bigint NOT NULL, "
                "data json NOT NULL, PRIMARY KEY (run_id, key))"
            )
            conn.execute(
                "INSERT INTO workers_rows SELECT 'r', k, json_build_object('k', k) "
                "FROM generate_series(1, 10) k"
            )
            conn.execute(
                "CREATE FUNCTION slow() RETURNS bool LANGUAGE plpgsql VOLATILE AS "
                "$$ BEGIN PERFORM pg_sleep(0.5); RETURN true; END $$"
            )
            conn.execute("CREATE VIEW slow_rows AS SELECT * FROM workers_rows WHERE slow()")
            conn.execute(
                "CREATE FUNCTION fail_with(code text) RETURNS bool LANGUAGE plpgsql VOLATILE AS "
                "$$ BEGIN RAISE EXCEPTION 'injected failure %', code USING ERRCODE = code; END $$"
            )
            for code in INJECTED_SQLSTATES:
                conn.execute(
                    f"CREATE VIEW fail_{code.lower()} AS SELECT * FROM workers_rows "
                    f"WHERE fail_with('{code}')"
                )
        yield PwCluster(services.LOCALHOST, cluster.port)


@dataclass
class S3Auth:
    """A dedicated moto server that checks credentials, with one user that has no policy."""

    endpoint_url: str
    bucket: str
    key_id: str
    secret: str
    writer_key_id: str
    writer_secret: str


@pytest.fixture(scope="module")
def s3_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Auth]:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(services.moto_server(tmp_path_factory.mktemp("moto-auth")))
        except (services.ServiceUnavailable, OSError) as exc:
            reason = str(exc)
        else:
            reason = ""
        if reason:
            unavailable(f"moto_server could not start: {reason}")
        import boto3

        kw: dict[str, Any] = {
            "endpoint_url": server.endpoint_url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "region_name": "us-east-1",
        }
        boto3.client("s3", **kw).create_bucket(Bucket="auth-bucket")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        # "writer" may read and write objects but not create buckets, as a pod's role should.
        iam.create_user(UserName="writer")
        iam.put_user_policy(
            UserName="writer",
            PolicyName="objects",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "s3:GetObject",
                                "s3:PutObject",
                                "s3:DeleteObject",
                                "s3:ListBucket",
                                "s3:ListBucketMultipartUploads",
                                "s3:AbortMultipartUpload",
                            ],
                            "Resource": "*",
                        }
                    ],
                }
            ),
        )
        writer = iam.create_access_key(UserName="writer")["AccessKey"]
        # From now on moto checks every request's key, signature and IAM policy.
        services.urllib.request.urlopen(
            services.urllib.request.Request(
                f"{server.endpoint_url}/moto-api/reset-auth",
                data=b"0",
                headers={"Content-Type": "text/plain"},
                method="POST",
            ),
            timeout=10,
        ).close()
        yield S3Auth(
            server.endpoint_url,
            "auth-bucket",
            key["AccessKeyId"],
            key["SecretAccessKey"],
            writer["AccessKeyId"],
            writer["SecretAccessKey"],
        )


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """Answers every request 503, as S3 (SlowDown, XML) or GCS (JSON) would."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith(("/storage/", "/upload/", "/download/", "/b/")):
            body = json.dumps({"error": {"code": 503, "message": "Backend Error"}}).encode()
            ctype = "application/json"
        else:
            body = (
                b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                b"<Message>Please reduce your request rate.</Message></Error>"
            )
            ctype = "application/xml"
        self.send_response(503)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def always_503() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((services.LOCALHOST, 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{services.LOCALHOST}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def mounted_tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        unavailable("needs root to mount a tmpfs")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ------------------------------------------------------------------------------ cases


@dataclass
class Ctx:
    """What a case needs; services start only when a case asks for them."""

    request: pytest.FixtureRequest
    run_step: RunStep
    tmp: Path

    def fixture(self, name: str) -> Any:
        return self.request.getfixturevalue(name)

    def step(self, step: str, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
        full = {"PYTHONPATH": STEP_PYTHONPATH, "WORKERS_CONNECT_TIMEOUT": "5", **(env or {})}
        return self.run_step(step, *args, env=full, cwd=self.tmp, **kw)

    def pg(self, url: str, step: str = "split", *args: str, **env: str) -> Any:
        if step == "split":
            args = ("--from-db", "--run-id", "r", *args)
        elif step == "shard":
            args = (
                "--shard",
                '{"index":0,"lo":null,"hi":null,"rows":null}',
                "--run-id",
                "r",
                "--store",
                str(self.tmp / "s"),
                *args,
            )
        elif step == "produce":
            args = ("--rows", "5", "--run-id", "r2", *args)
        return self.step(step, *args, env={"WORKERS_DATABASE_URL": url, **env})

    def sqlite(self, step: str, *args: str, **env: str) -> Any:
        url = f"sqlite:///{self.tmp}/db.sqlite"
        self.step("produce", "--rows", "10", "--run-id", "r", env={"WORKERS_DATABASE_URL": url})
        return self.step(step, *args, env={"WORKERS_DATABASE_URL": url, **env})

    def shard_to(self, store: str, env: dict[str, str], **kw: Any) -> Any:
        db = f"sqlite:///{self.tmp}/db.sqlite"
        self.step("produce", "--rows", "3000", "--run-id", "r", env={"WORKERS_DATABASE_URL": db})
        item = '{"index":0,"lo":1,"hi":3000,"rows":3000}'
        return self.step(
            "shard",
            "--shard",
            item,
            "--run-id",
            "r",
            "--store",
            store,
            env={"WORKERS_DATABASE_URL": db, **env},
            **kw,
        )


@dataclass(frozen=True)
class Case:
    id: str
    cause: str
    fragment: str
    run: Callable[[Ctx], Any]


CASES: list[Case] = []


def case(cause: str, fragment: str) -> Callable[[Callable[[Ctx], Any]], Callable[[Ctx], Any]]:
    def register(fn: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
        CASES.append(Case(fn.__name__, cause, fragment, fn))
        return fn

    return register


# PostgreSQL: logins


@case("db-auth", 'password authentication failed for user "app"')
def pg_wrong_password(c: Ctx) -> Any:
    return c.pg(c.fixture("pw_cluster").url(password=WRONG_PW))


@case("db-auth", 'password authentication failed for user "ghost"')
def pg_unknown_role(c: Ctx) -> Any:
    # Under scram-sha-256 the server does not say whether the role exists.
    return c.pg(c.fixture("pw_cluster").url(user="ghost", password=WRONG_PW), "shard")


@case("db-auth", "no password supplied")
def pg_no_password(c: Ctx) -> Any:
    return c.pg(c.fixture("pw_cluster").url(password=None), "produce")


@case("db-unknown", 'database "nosuchdb" does not exist')
def pg_unknown_database(c: Ctx) -> Any:
    return c.pg(c.fixture("pw_cluster").url(db="nosuchdb"))


@case("db-url", 'invalid sslmode value: "sometimes"')
def pg_invalid_sslmode(c: Ctx) -> Any:
    return c.pg(c.fixture("pw_cluster").url() + "?sslmode=sometimes")


@case("db-url", 'invalid port number: "99999"')
def pg_invalid_port(c: Ctx) -> Any:
    return c.pg(f"postgresql://app:{APP_PW}@127.0.0.1:99999/appdb", "shard")


@case("db-url", "server does not support SSL")
def pg_ssl_required(c: Ctx) -> Any:
    return c.pg(c.fixture("pw_cluster").url() + "?sslmode=require")


@case("db-url", "Name or service not known")
def pg_host_that_does_not_exist(c: Ctx) -> Any:
    return c.pg(f"postgresql://app:{APP_PW}@no-such-host.invalid:5432/appdb")


@case("unreachable", "Connection refused")
def pg_connection_refused(c: Ctx) -> Any:
    return c.pg(f"postgresql://app:{APP_PW}@127.0.0.1:{services.free_port()}/appdb", "produce")


# PostgreSQL: schema and privileges


@case("db-permission", "permission denied for table workers_rows")
def pg_table_permission(c: Ctx) -> Any:
    return c.pg(c.fixture("pw_cluster").url(user="reader", password=READER_PW))


@case("db-permission", "permission denied for schema public")
def pg_cannot_create_the_table(c: Ctx) -> Any:
    url = c.fixture("pw_cluster").url(user="reader", password=READER_PW)
    return c.pg(url, "produce", "--table", "new_rows")


@case("db-unknown", "has no column 'runid' (--run-column); its columns: run_id, key, data")
def pg_unknown_column(c: Ctx) -> Any:
    return c.pg(c.fixture("pw_cluster").url(), "split", "--run-column", "runid")


@case("db-unknown", "has no column 'payload' (--data-column)")
def pg_unknown_column_in_shard(c: Ctx) -> Any:
    return c.pg(c.fixture("pw_cluster").url(), "shard", "--data-column", "payload")


@case("db-unknown", "table 'nosuch' does not exist")
def pg_unknown_table(c: Ctx) -> Any:
    return c.pg(c.fixture("pw_cluster").url(), "shard", "--table", "nosuch")


# PostgreSQL: faults that clear


@case("overloaded", "too many connections for role")
def pg_connection_limit(c: Ctx) -> Any:
    return c.pg(c.fixture("pw_cluster").url(user="limited", password=LIMITED_PW))


@case("overloaded", "canceling statement due to statement timeout (SQLSTATE 57014)")
def pg_statement_timeout(c: Ctx) -> Any:
    url = c.fixture("pw_cluster").url() + "?options=-c%20statement_timeout%3D300"
    return c.pg(url, "split", "--table", "slow_rows")


@case("server-shutdown", "terminating connection due to administrator command")
def pg_backend_terminated(c: Ctx) -> Any:
    import psycopg

    cluster = c.fixture("pw_cluster")
    admin = f"postgresql://postgres:{SUPER_PW}@{cluster.host}:{cluster.port}/appdb"
    done = threading.Event()

    def terminate() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            while not done.is_set():
                row = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'workers' AND query LIKE '%slow_rows%'"
                ).fetchone()
                if row and row[0]:
                    return
                time.sleep(0.05)

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    try:
        return c.pg(cluster.url(), "split", "--table", "slow_rows")
    finally:
        done.set()
        killer.join(10)


@case("terminated", "SIGTERM (a spot node's notice): checkpointed 2 rows read")
def sqlite_shard_spot_notice(c: Ctx) -> Any:
    # A real SIGTERM, sent by the processor to its own process during the first batch.
    item = '{"index":0,"lo":1,"hi":10,"rows":10}'
    return c.sqlite(
        "shard",
        *("--shard", item, "--run-id", "r", "--store", str(c.tmp / "s")),
        *("--processor", "plugins.spot:notice_on_first_batch"),
        *("--batch-size", "2", "--checkpoint-rows", "4"),
        WORKERS_TEST_NOTICE="1",
    )


@case("deadline", "step deadline of 1s exceeded")
def pg_step_deadline(c: Ctx) -> Any:
    url = c.fixture("pw_cluster").url()
    return c.pg(url, "split", "--table", "slow_rows", WORKERS_TIMEOUT="1")


def _injected(code: str, cause: str) -> None:
    def run(c: Ctx) -> Any:
        return c.pg(c.fixture("pw_cluster").url(), "split", "--table", f"fail_{code.lower()}")

    run.__name__ = f"pg_sqlstate_{code}"
    case(cause, f"injected failure {code} (SQLSTATE {code})")(run)


for _code, _cause in INJECTED_SQLSTATES.items():
    _injected(_code, _cause)


# SQLite


@case("db-unknown", "has no column 'runid' (--run-column); its columns: run_id, key, data")
def sqlite_unknown_run_column(c: Ctx) -> Any:
    # On main this printed [] and exited 0: SQLite reads "runid" as a string literal.
    return c.sqlite("split", "--from-db", "--run-id", "r", "--run-column", "runid")


@case("db-unknown", "has no column 'dat' (--data-column)")
def sqlite_unknown_data_column(c: Ctx) -> Any:
    return c.sqlite(
        "shard",
        "--shard",
        '{"index":0,"lo":null,"hi":null,"rows":null}',
        "--run-id",
        "r",
        "--data-column",
        "dat",
        "--store",
        "s",
    )


@case("db-unknown", "has no column 'id' (--key-column)")
def sqlite_unknown_key_column(c: Ctx) -> Any:
    return c.sqlite("split", "--from-db", "--run-id", "r", "--key-column", "id")


@case("column-type", "table 'flags': column 'done' (BOOLEAN) holds 2, not 0 or 1")
def sqlite_boolean_holding_two(c: Ctx) -> Any:
    # A default shard on a real table used to stop here with exit 3 or 70 (not the user's code).
    import sqlite3

    with contextlib.closing(sqlite3.connect(c.tmp / "flags.sqlite")) as conn, conn:
        conn.execute("CREATE TABLE flags (id INTEGER PRIMARY KEY, done BOOLEAN)")
        conn.execute("INSERT INTO flags VALUES (1, 1), (2, 2)")
    return c.step(
        "shard",
        *("--shard", '{"index":0,"lo":null,"hi":null,"rows":null}', "--run-id", "r"),
        *("--store", "s", "--table", "flags", "--key-column", "id", "--run-column", ""),
        *("--data-column", ""),
        env={"WORKERS_DATABASE_URL": f"sqlite:///{c.tmp}/flags.sqlite"},
    )


@case("db-unknown", "unable to open database file")
def sqlite_unopenable_file(c: Ctx) -> Any:
    return c.step("produce", env={"WORKERS_DATABASE_URL": "sqlite:////nonexistent/dir/x.db"})


@case("overloaded", "database is locked")
def sqlite_locked(c: Ctx) -> Any:
    import sqlite3

    path = c.tmp / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")
        return c.step(
            "produce",
            "--rows",
            "5",
            env={"WORKERS_DATABASE_URL": f"sqlite:///{path}", "WORKERS_CONNECT_TIMEOUT": "1"},
        )
    finally:
        holder.close()


# Local stores


@case("store-read-only", "Read-only file system")
def local_read_only_store(c: Ctx) -> Any:
    with mounted_tmpfs(c.tmp / "ro", "ro,size=1m") as ro:
        return c.shard_to(str(ro / "run"), {})


@case("no-space", "No space left on device")
def local_full_store(c: Ctx) -> Any:
    with mounted_tmpfs(c.tmp / "full", "size=64k") as full:
        return c.shard_to(str(full / "run"), {})


@case("store-invalid", "is a folder, not a regular file")
def local_output_is_a_folder(c: Ctx) -> Any:
    (c.tmp / "folder").mkdir()
    return c.step("split", "--count", "5", "--output-file", str(c.tmp / "folder"))


# S3


def _s3_auth_env(auth: S3Auth, key_id: str, secret: str) -> dict[str, str]:
    return {
        **services.s3_env(auth.endpoint_url),
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
    }


# A HEAD request's 403 has no body, so S3 cannot say why: bad credentials and a missing
# permission look alike there, which is why they are one cause.
@case("store-access", "S3 answered 403")
def s3_unknown_key(c: Ctx) -> Any:
    auth = c.fixture("s3_auth")
    env = _s3_auth_env(auth, "AKIAUNKNOWN000000000", S3_BAD_SECRET)
    return c.shard_to(f"s3://{auth.bucket}/run", env)


@case("store-access", "S3 answered 403")
def s3_wrong_secret(c: Ctx) -> Any:
    auth = c.fixture("s3_auth")
    return c.shard_to(f"s3://{auth.bucket}/run", _s3_auth_env(auth, auth.key_id, S3_BAD_SECRET))


@case("store-access", "S3 answered 403")
def s3_no_policy(c: Ctx) -> Any:
    auth = c.fixture("s3_auth")
    return c.shard_to(f"s3://{auth.bucket}/run", _s3_auth_env(auth, auth.key_id, auth.secret))


@case("store-missing", "bucket no-such-bucket-4471 does not exist")
def s3_missing_bucket(c: Ctx) -> Any:
    # The role may read and write objects: S3 (and moto) answer its read of a missing
    # bucket with 403, and a probe of the bucket tells the two apart.
    auth = c.fixture("s3_auth")
    env = _s3_auth_env(auth, auth.writer_key_id, auth.writer_secret)
    return c.shard_to("s3://no-such-bucket-4471/run", env)


@case("throttled", "S3 answered 503")
def s3_slow_down(c: Ctx) -> Any:
    env = {**services.s3_env(c.fixture("always_503")), "AWS_MAX_ATTEMPTS": "2"}
    return c.shard_to("s3://any-bucket/run", env, timeout=180)


@case("unreachable", "store s3://any-bucket/run: cannot connect to")
def s3_endpoint_refused(c: Ctx) -> Any:
    env = {**services.s3_env(f"http://127.0.0.1:{services.free_port()}"), "AWS_MAX_ATTEMPTS": "2"}
    return c.shard_to("s3://any-bucket/run", env, timeout=180)


# GCS


@case("store-missing", "no-such-bucket-5582")
def gcs_missing_bucket(c: Ctx) -> Any:
    server = c.fixture("gcs_server")
    return c.shard_to("gs://no-such-bucket-5582/run", services.gcs_env(server.endpoint_url))


@case("store-invalid", "gcs-endpoint-7731.example.invalid does not resolve")
def gcs_endpoint_unresolvable(c: Ctx) -> Any:
    # Checked once, up front: gcsfs would retry the name for minutes, and DNS errors were
    # taken for the database's (db-url).
    env = services.gcs_env("http://gcs-endpoint-7731.example.invalid:4443")
    return c.shard_to("gs://any-bucket/run", env)


@case("throttled", "Backend Error")
def gcs_unavailable(c: Ctx) -> Any:
    # gcsfs retries a 503 six times with backoff (about 30 s) before it gives up.
    return c.shard_to("gs://any-bucket/run", services.gcs_env(c.fixture("always_503")), timeout=240)


# The process itself


@case("out-of-memory", "out of memory (MemoryError)")
def memory_limit(c: Ctx) -> Any:
    # Merge streams parts in blocks, but one value is held whole: a 64 MiB array on one line.
    part = c.tmp / "big.jsonl"
    with part.open("wb") as f:
        f.write(b"[")
        for _ in range(64):
            f.write(b"1," * (1 << 19))  # 64 MiB in all
        f.write(b"1]\n")
    limit = 96 << 20

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return c.step("merge", str(part), "--output", str(c.tmp / "out.json"), preexec_fn=cap)


def _fake_psycopg(c: Ctx, body: str) -> dict[str, str]:
    fake = c.tmp / "fake" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(body)
    return {"PYTHONPATH": f"{fake.parent}{os.pathsep}{STEP_PYTHONPATH}"}


def _split_with_fake_psycopg(c: Ctx, body: str) -> Any:
    env = _fake_psycopg(c, body)
    return c.step(
        "split",
        "--from-db",
        "--run-id",
        "r",
        env={**env, "WORKERS_DATABASE_URL": "postgresql://app@127.0.0.1:1/appdb"},
    )


@case("missing-dependency", "pip install 'workers[postgres]'")
def psycopg_that_does_not_import(c: Ctx) -> Any:
    return _split_with_fake_psycopg(c, "raise ImportError('no pq wrapper available')\n")


@case("internal", "unexpected RuntimeError: a bug")
def unexpected_exception(c: Ctx) -> Any:
    # A driver raising something nobody expects stands in for a bug in our own code.
    body = "class Error(Exception): pass\ndef connect(*a, **k): raise RuntimeError('a bug')\n"
    return _split_with_fake_psycopg(c, body)


@case("bad-input", "expected at most 9223372036854775807")
def rows_of_30_digits(c: Ctx) -> Any:
    return c.step("produce", "--rows", "9" * 30)


@case("user-code", "tests/plugins/userfuncs.py:")
def generator_raises(c: Ctx) -> Any:
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{c.tmp}/db.sqlite"}
    return c.step("produce", "--generator", "plugins.userfuncs:broken_generator", env=env)


@case("incomplete", "no plan at")
def merge_without_a_plan(c: Ctx) -> Any:
    return c.step("merge", "--store", str(c.tmp / "store"))


@case("stale", "produce ran again")
def shard_after_produce_ran_again(c: Ctx) -> Any:
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{c.tmp}/db.sqlite"}
    store = str(c.tmp / "store")
    c.step("produce", "--rows", "10", "--run-id", "r", env=env)
    c.step("split", "--count", "10", "--run-id", "r", "--store", store, env=env)
    c.step("produce", "--rows", "10", "--run-id", "r", "--seed", "2", env=env)
    item = '{"index":0,"lo":1,"hi":10,"rows":10}'
    return c.step("shard", "--shard", item, "--run-id", "r", "--store", store, env=env)


@case("bad-input", "the count is stale")
def split_with_a_stale_count(c: Ctx) -> Any:
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{c.tmp}/db.sqlite"}
    c.step("produce", "--rows", "15", "--run-id", "r", env=env)
    return c.step("split", "--count", "10", "--run-id", "r", env=env)


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_exit_code_of_each_cause(
    case: Case, request: pytest.FixtureRequest, run_step: RunStep, tmp_path: Path
) -> None:
    proc = case.run(Ctx(request, run_step, tmp_path))
    expected = failures.CAUSES[case.cause]
    assert proc.returncode == expected.code, proc.stderr
    err = error_of(proc)  # the last line, JSON, an error, no traceback
    assert err["cause"] == case.cause, err
    assert err["exit_code"] == expected.code
    assert case.fragment in err["message"], err["message"]
    if expected.fix:
        assert err["message"].endswith(expected.fix)
    assert [line for line in proc.stderr.splitlines() if '"level":"error"' in line] == [
        proc.stderr.splitlines()[-1]
    ]
    output = proc.stdout + proc.stderr
    assert not [s for s in SECRETS if s in output]


def test_every_cause_has_a_case_against_a_real_process() -> None:
    assert {c.cause for c in CASES} == set(failures.CAUSES)


def _docs_exit_code_rows() -> dict[str, int]:
    import docs_pages

    section = docs_pages.page("reference/exit-codes.md")
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\|\s*(\d+)\s*\|\s*`([a-z-]+)`\s*\|", line)
        if m:
            rows[m.group(2)] = int(m.group(1))
    return rows


def test_docs_exit_code_table_matches_the_module() -> None:
    rows = _docs_exit_code_rows()
    assert rows == {name: c.code for name, c in failures.CAUSES.items()}
    assert set(rows.values()) == set(exitcodes.ALL.values()) - {exitcodes.OK}


# needs the lead's serialized CREATE TABLE
def test_parallel_produces_creating_one_new_table_all_succeed(pg_db: str, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "workers.produce", "--rows", "100", "--table", "fresh_rows"]
    env = services.step_env(tmp_path / "home", {"WORKERS_DATABASE_URL": pg_db})
    procs = [
        subprocess.Popen(
            [*cmd, "--run-id", f"run-{i}"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    stderr = [p.communicate(timeout=120)[1] for p in procs]
    results = [(p.returncode, err) for p, err in zip(procs, stderr, strict=True)]
    assert [code for code, _ in results] == [0] * 6, results
