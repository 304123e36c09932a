"""Benchmark each step against the raw tool that does the same job, on the same rows.

Pairs (same data, same machine, same run; medians of alternating A/B runs):

  produce   python -m workers.produce        vs psql \\copy FROM a file of the same rows
  shard     python -m workers.shard (first)  vs psql \\copy (SELECT ...) TO a file
            shard (deepest key range)        vs shard (first key range)
            shard with checkpoints           vs --checkpoint-rows 0 (whole table, one shard)
            retry after a SIGKILL at 90%     vs a clean shard of the same rows
  merge     python -m workers.merge --store   vs cat of the same parts (jsonl and json)
            python -m workers.merge --glob    vs jq -s . (cat for one huge part)
            at 10, 100 and 1,000 parts of the same bytes and one huge part, with peak RSS
  start-up  python -m workers.shard --help   vs the bare interpreter; process start to first row
            (both to their first row)
  split     500 billion rows, default guard  vs the bare interpreter
  runner    workers run workers-pipeline     vs the same steps by xargs -P 10, at 10/50/200
            shards (one row each): wall = a + b x shards, per-pod overhead from the slopes
  wide      10,000 shards through the runner vs the fit's prediction (full size only)
  columnar  a typed table (1M and 5M rows): shard --batch-format pyarrow into a Parquet part
            vs psql \\copy (SELECT ...) TO a file, and vs --batch-format rows into JSON Lines
            (return rows, and a one-field enrich); Parquet part bytes vs JSON Lines;
            merge --format parquet vs cat, --format dataset vs one sha256 pass, at 10, 100
            and 1,000 Parquet parts, with peak RSS

Peak memory is the OS's figure for each child (``ru_maxrss`` from ``os.wait4``).
The database comes from $WORKERS_BENCH_DATABASE_URL, else a ``workers_bench``
database created on postgresql://postgres@127.0.0.1:5432, else a throwaway
cluster started with initdb/pg_ctl as an unprivileged user. See README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import filecmp
import functools
import hashlib
import json
import os
import platform
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RUN_ID = "bench"
KILL_TRIES = 20
"""Attempts at killing a shard between its 90% checkpoint and its end (resume row)."""
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "workers_bench"
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

SIZES = {
    # rows produced and shard-table rows, rows per shard, merge: MB spread over 10, 100 and
    # 1,000 parts and MB of the one huge part, repeats
    "quick": {
        "rows": 100_000,
        "shard_rows": 10_000,
        "merge_mb": 4,
        "huge_mb": 32,
        "runs": 3,
    },
    "full": {
        "rows": 1_000_000,
        "shard_rows": 100_000,
        "merge_mb": 200,
        "huge_mb": 1024,
        "runs": 5,
    },
}
MERGE_PARTS = (10, 100, 1_000)
ROW_BYTES = 154  # about what write_parts makes a row, newline included


# --- running and measuring children -------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    peak_kb: int
    stdout: bytes = b""
    started: float = 0.0
    cpu: float = 0.0  # user + system seconds of the child and its children


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdout_path: str | None = None,
    capture: bool = False,
) -> Sample:
    """Run one child; wall time from fork to reap and its peak RSS from the kernel.

    Output goes to files, not pipes, so the child is reaped by ``os.wait4`` (which
    returns its rusage) rather than by ``communicate``. The child is started under
    GNU time when available: a child spawned straight from this (large) process
    inherits its RSS high-water mark through vfork/exec, and ``ru_maxrss`` would
    report this process's size instead of the child's. GNU time forks from a small
    process, so its ``%M`` (the same ``ru_maxrss`` from ``wait4``) is the child's own.
    """
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(tempfile.TemporaryFile())
        if stdout_path:
            out: Any = stack.enter_context(open(stdout_path, "wb"))
        elif capture:
            out = stack.enter_context(tempfile.TemporaryFile())
        else:
            out = subprocess.DEVNULL
        argv = list(cmd)
        rss_file = None
        if TIME:
            rss_file = stack.enter_context(tempfile.NamedTemporaryFile())
            argv = [TIME, "-o", rss_file.name, "-f", "%M", *argv]
        started = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak_kb = int(usage.ru_maxrss)
        if rss_file is not None:
            # GNU time's last line is %M (earlier lines say why the command failed).
            with contextlib.suppress(ValueError, IndexError):
                peak_kb = int(Path(rss_file.name).read_text().split()[-1])
        data = b""
        if capture and not stdout_path:
            out.seek(0)
            data = out.read()
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd)[:200]} exited {proc.returncode}: {tail}")
    return Sample(seconds, peak_kb, data, started, usage.ru_utime + usage.ru_stime)


@dataclass
class Pair:
    step: str
    a_label: str
    b_label: str
    a: list[Sample] = field(default_factory=list)
    b: list[Sample] = field(default_factory=list)
    work: float = 0.0  # rows or bytes per run, for the rate column
    unit: str = "rows"
    digits: int = 0  # decimals of the rate (a few shards per second need one)
    target: str = ""
    ok: bool | None = None
    note: str = ""
    a_seconds: float | None = None  # overrides the median of a (derived timings)
    b_seconds: float | None = None
    a_derived: list[float] | None = None  # the derived timings' samples, for their range
    b_derived: list[float] | None = None
    ratio: float | None = None  # overrides a / b (a ratio of bytes, not seconds)

    def median(self, which: str) -> float:
        override = self.a_seconds if which == "a" else self.b_seconds
        if override is not None:
            return override
        samples = self.a if which == "a" else self.b
        return statistics.median(s.seconds for s in samples)

    def spread(self, which: str) -> list[float] | None:
        """[fastest, slowest] of one side's measured runs (None for a fit or a prediction)."""
        derived = self.a_derived if which == "a" else self.b_derived
        if derived:
            return [round(min(derived), 4), round(max(derived), 4)]
        if (self.a_seconds if which == "a" else self.b_seconds) is not None:
            return None
        samples = [s.seconds for s in (self.a if which == "a" else self.b)]
        return [round(min(samples), 4), round(max(samples), 4)] if samples else None

    def cpu(self, which: str) -> float:
        """Median CPU seconds of one side: on a shared machine, steadier than wall time."""
        return statistics.median(s.cpu for s in (self.a if which == "a" else self.b))

    def peak_mb(self, which: str) -> float:
        samples = self.a if which == "a" else self.b
        return max((s.peak_kb for s in samples), default=0) / 1024

    def row(self) -> dict[str, Any]:
        a, b = self.median("a"), self.median("b")
        rate = None
        if self.work:
            per = self.work / a
            rate = (
                f"{per / 1e6:.1f} MB/s"
                if self.unit == "bytes"
                else f"{per:,.{self.digits}f} {self.unit}/s"
            )
        return {
            "step": self.step,
            "workers": self.a_label,
            "raw_tool": self.b_label,
            "workers_s": round(a, 4),
            "raw_s": round(b, 4),
            "workers_range_s": self.spread("a"),
            "raw_range_s": self.spread("b"),
            "ratio": round(self.ratio if self.ratio is not None else a / b, 3) if b else None,
            "workers_rate": rate,
            "workers_peak_mb": round(self.peak_mb("a"), 1),
            "raw_peak_mb": round(self.peak_mb("b"), 1),
            "runs": max(len(self.a), len(self.b)),
            "target": self.target,
            "met": self.ok,
            "note": self.note,
        }


def settle() -> None:
    """Write back every dirty page before a run: a side that fsyncs (a shard) must not wait for
    the other side's output still in the page cache (psql does not fsync)."""
    os.sync()


_SHA256_FILES = """
import hashlib, sys
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        hashlib.file_digest(f, "sha256")
"""


def median_seconds(cmd: Sequence[str], runs: int) -> float:
    """Median wall time of ``cmd`` alone, each run from a clean page cache state (a floor)."""
    samples = []
    for _ in range(runs):
        settle()
        samples.append(run(cmd).seconds)
    return statistics.median(samples)


def alternate(
    pair: Pair,
    runs: int,
    a: Callable[[], Sample],
    b: Callable[[], Sample],
    before: Callable[[], None] | None = None,
) -> Pair:
    """A, B, B, A, A, B ...: neither side always runs first, after one unmeasured warm-up each."""
    for fn in (a, b):
        if before:
            before()
        fn()
    for i in range(runs):
        order = [("a", a), ("b", b)] if i % 2 == 0 else [("b", b), ("a", a)]
        for which, fn in order:
            if before:
                before()
            (pair.a if which == "a" else pair.b).append(fn())
    return pair


# --- PostgreSQL -------------------------------------------------------------------------


def _answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def database(log: Callable[[str], None]) -> Iterator[str]:
    """The benchmark database URL: given, created on the default server, or a throwaway cluster."""
    given = os.environ.get("WORKERS_BENCH_DATABASE_URL")
    if given:
        if not _answers(given):
            raise SystemExit(f"WORKERS_BENCH_DATABASE_URL does not answer: {given}")
        yield given
        return
    if _answers(DEFAULT_ADMIN_URL):
        _create_db(DEFAULT_ADMIN_URL)
        yield _with_db(DEFAULT_ADMIN_URL, BENCH_DB)
        return
    log("no PostgreSQL on 127.0.0.1:5432: starting a throwaway cluster")
    with throwaway_cluster() as admin:
        _create_db(admin)
        yield _with_db(admin, BENCH_DB)


def _create_db(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone():
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        raise SystemExit(f"{name} not found: install PostgreSQL or set WORKERS_BENCH_DATABASE_URL")
    return str(candidates[-1])


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """initdb + pg_ctl in a temp folder, as a non-root user (PostgreSQL refuses to run as root)."""
    user: str | None = None
    if os.geteuid() == 0:
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                user = name
                break
    folder = tempfile.mkdtemp(prefix="workers-bench-pg-")
    data = os.path.join(folder, "data")
    if user:
        pw = pwd.getpwnam(user)
        os.chown(folder, pw.pw_uid, pw.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [_pg_bin("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        user=user,
        stdout=subprocess.DEVNULL,
        cwd=folder,
    )
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=on"
    subprocess.run(
        [
            _pg_bin("pg_ctl"),
            "-D",
            data,
            "-o",
            opts,
            "-l",
            os.path.join(folder, "log"),
            "-w",
            "start",
        ],
        check=True,
        user=user,
        stdout=subprocess.DEVNULL,
        cwd=folder,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [_pg_bin("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
            check=False,
            user=user,
            stdout=subprocess.DEVNULL,
            cwd=folder,
        )
        shutil.rmtree(folder, ignore_errors=True)


def sql(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


# --- data ---------------------------------------------------------------------------------


def write_copy_file(path: str, rows: int) -> int:
    """The rows produce's built-in generator makes, as COPY text (run_id, key, data)."""
    sys.path.insert(0, str(ROOT))
    from workers.synth import generate

    dumps = orjson.dumps
    size = 0
    with open(path, "wb") as f:
        buf = []
        for i, obj in enumerate(generate(rows, 0), 1):
            buf.append(b"%s\t%d\t%s\n" % (RUN_ID.encode(), i, dumps(obj)))
            if len(buf) >= 50_000:
                size += f.write(b"".join(buf))
                buf.clear()
        size += f.write(b"".join(buf))
    return size


_WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def _rows(first: int, count: int) -> bytes:
    """``count`` shard-shaped rows (JSON Lines) from key ``first`` on."""
    dumps = orjson.dumps
    lines = []
    for key in range(first, first + count):
        h = (key * 2654435761) % (1 << 32)
        lines.append(
            dumps(
                {
                    "id": key,
                    "city": ("Lisbon", "Oslo", "Taipei", "Kyiv")[h % 4],
                    "score": (h % 10_000) / 100,
                    "ok": bool(h & 1),
                    "tags": [_WORDS[h % 10], _WORDS[(h >> 3) % 10]],
                    "note": f'row {key} \u00e9t\u00e9 "quoted" {_WORDS[(h >> 5) % 10] * 3}',
                    "nested": {"a": h % 97, "b": None},
                },
                option=orjson.OPT_APPEND_NEWLINE,
            )
        )
    return b"".join(lines)


def write_parts(store: str, parts: int, part_rows: int) -> int:
    """Shard-shaped parts (JSON Lines), a plan and commit records: what merge --store expects.

    A part of more than 10,000 rows repeats its first 10,000 (written block by block, so
    a part of any size is made at disk speed without being held in memory).
    """
    from workers import layout
    from workers.shards import Shard

    os.makedirs(os.path.join(store, "parts"), exist_ok=True)
    os.makedirs(os.path.join(store, "commits"), exist_ok=True)
    total = 0
    shards = []
    key = 0
    for p in range(parts):
        lo = key + 1
        block = _rows(lo, min(part_rows, 10_000))
        per_block = min(part_rows, 10_000)
        sha = hashlib.sha256()
        size = 0
        with open(layout.part_url(store, p), "wb") as f:
            left = part_rows
            while left:
                data = block if left >= per_block else b"".join(block.splitlines(True)[:left])
                f.write(data)
                sha.update(data)
                size += len(data)
                left -= min(left, per_block)
        key += part_rows
        total += size
        shard = Shard(p, lo, key, part_rows)
        shards.append(shard)
        record = {
            "run_id": RUN_ID,
            "index": p,
            "lo": lo,
            "hi": key,
            "rows_in": part_rows,
            "rows": part_rows,
            "bytes": size,
            "sha256": sha.hexdigest(),
            "attempt": 0,
            "duration_s": 0.1,
        }
        with open(layout.commit_url(store, p), "wb") as f:
            f.write(orjson.dumps(record))
    layout.write_plan(store, layout.Plan(RUN_ID, key, tuple(shards), {"mode": "count"}))
    return total


COLUMNAR = {"pyarrow", "pandas", "polars", "numpy", "adbc_driver_postgresql", "adbc_driver_manager"}
"""What only a columnar shard (--batch-format pyarrow|pandas|polars) may import: a rows shard
pays nothing for it at start-up."""


def imported_modules(cmd: Sequence[str], env: dict[str, str]) -> set[str]:
    """Top-level packages a command imports, from ``python -X importtime``."""
    proc = subprocess.run([PY, "-X", "importtime", *cmd], env=env, capture_output=True, check=False)
    mods = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            mods.add(name.split(".")[0])
    return mods


# --- the benchmark --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: finishes in under a minute")
    ap.add_argument("--runs", type=int, help="measured runs per side (default 3 quick, 5 full)")
    ap.add_argument(
        "--json",
        metavar="PATH",
        default=str(Path(__file__).resolve().parent / "results.json"),
        help="where to write the table as JSON (default benchmarks/results.json)",
    )
    ap.add_argument(
        "--only",
        help="comma-separated steps: produce,shard,merge,startup,split,runner,wide,columnar",
    )
    ap.add_argument("--merge-mb", type=int, help="MB the merge rows spread over 10/100/1,000 parts")
    ap.add_argument("--huge-mb", type=int, help="MB of the merge rows' one huge part")
    ap.add_argument(
        "--shard-rows", type=int, help="rows of the shard rows (default 10k quick, 100k full)"
    )
    ap.add_argument(
        "--columnar-rows",
        help="comma-separated sizes of the typed table of the columnar rows; its merge rows "
        "spread the last size (default 20000 quick, 1000000,5000000 full)",
    )
    args = ap.parse_args(argv)
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.shard_rows:
        size["shard_rows"] = args.shard_rows
    if args.merge_mb:
        size["merge_mb"] = args.merge_mb
    if args.huge_mb:
        size["huge_mb"] = args.huge_mb
    runs = args.runs or size["runs"]
    only = set(args.only.split(",")) if args.only else None
    columnar_rows: tuple[int, ...] = (20_000,) if args.quick else (1_000_000, 5_000_000)
    if args.columnar_rows:
        columnar_rows = tuple(int(x) for x in args.columnar_rows.split(","))

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    for tool in ("psql", "jq", "cat"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required (apt-get install postgresql-client jq)")

    pairs: list[Pair] = []
    work = tempfile.mkdtemp(prefix="workers-bench-")
    try:
        with database(log) as url:
            env = {**os.environ, "WORKERS_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
            env.pop("WORKERS_DEBUG", None)
            env.pop("WORKERS_TIMEOUT", None)
            # Every step runs from compiled bytecode, as from the image (which ships .pyc
            # files): with PYTHONDONTWRITEBYTECODE inherited from a developer's shell, each
            # run of each step would time compiling our modules (~30 ms) instead.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
            ctx = Context(url, env, work, size, runs, log, columnar_rows)
            steps = [
                ("produce", ctx.produce),
                ("shard", ctx.shard),
                ("merge", ctx.merge),
                ("startup", ctx.startup),
                ("split", ctx.split),
                ("runner", ctx.runner),
                ("wide", ctx.wide),
                ("columnar", ctx.columnar),
            ]
            for name, fn in steps:
                # The 10,000-shard run takes ~20 minutes on 2 cores: full size, or asked for.
                default = name != "wide" or not args.quick
                if (only is None and default) or (only is not None and name in only):
                    log(f"{name} ...")
                    pairs.extend(fn())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [p.row() for p in pairs]
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "size": "quick" if args.quick else "full",
        "params": size | {"runs": runs, "columnar_rows": list(columnar_rows)},
        "machine": machine(),
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(render(result))
    log(f"wrote {args.json}")
    return 0


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _ranges(a: list[float] | None, b: list[float] | None) -> str:
    """Both sides' fastest-slowest runs, as the medians' company ("-" where there are none)."""

    def one(r: list[float] | None) -> str:
        return f"{r[0]:.3f}-{r[1]:.3f}" if r else "-"

    return "-" if not a and not b else f"{one(a)} | {one(b)}"


def render(result: dict[str, Any]) -> str:
    head = (
        "step",
        "workers",
        "raw tool",
        "workers s",
        "raw s",
        "ratio",
        "range w | raw (s)",
        "rate",
        "peak MB w/raw",
    )
    head2 = ("target", "met")
    lines = []
    table = []
    for r in result["rows"]:
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        table.append(
            (
                r["step"],
                r["workers"],
                r["raw_tool"],
                f"{r['workers_s']:.3f}",
                f"{r['raw_s']:.3f}",
                f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-",
                _ranges(r.get("workers_range_s"), r.get("raw_range_s")),
                r["workers_rate"] or "-",
                f"{r['workers_peak_mb']:.0f}/{r['raw_peak_mb']:.0f}",
                r["target"],
                met,
            )
        )
    widths = [max(len(str(x[i])) for x in [head + head2, *table]) for i in range(len(head) + 2)]
    m = result["machine"]
    lines.append(
        f"{result['date']}  size={result['size']}  nproc={m['nproc']}  cpu={m['cpu']}  "
        f"python={m['python']}"
    )
    for row in [head + head2, tuple("-" * w for w in widths), *table]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    notes = [f"  {r['step']}: {r['note']}" for r in result["rows"] if r["note"]]
    if notes:
        lines.append("notes:")
        lines.extend(notes)
    return "\n".join(lines)


@dataclass
class Context:
    url: str
    env: dict[str, str]
    work: str
    size: dict[str, int]
    runs: int
    log: Callable[[str], None]
    columnar_rows: tuple[int, ...] = (20_000,)

    def psql(self, command: str) -> list[str]:
        return ["psql", self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command]

    # (1) produce vs psql \copy FROM, growing: 100k, 1M and 5M rows at full size
    def produce(self) -> list[Pair]:
        n = self.size["rows"]
        sizes = (n,) if self.size["runs"] < 5 else (100_000, n, 5 * n)
        return [self._produce(rows) for rows in sizes]

    def _produce(self, n: int) -> Pair:
        path = os.path.join(self.work, "rows.copy")
        nbytes = write_copy_file(path, n)
        table = "bench_produce"
        sql(self.url, f"DROP TABLE IF EXISTS {table}")
        # The table produce creates, so that psql loads into the same shape.
        sql(
            self.url,
            f"CREATE TABLE {table} (run_id text NOT NULL, key bigint NOT NULL, data json NOT NULL, "
            "PRIMARY KEY (run_id, key))",
        )
        count_file = os.path.join(self.work, "count")
        pair = Pair("produce", f"produce --rows {n}", "psql \\copy from file", work=n)
        cmd = [PY, "-m", "workers.produce", "--rows", str(n), "--table", table]
        cmd += ["--run-id", RUN_ID, "--count-file", count_file]
        alternate(
            pair,
            self.runs,
            lambda: run(cmd, env=self.env),
            lambda: run(self.psql(f"\\copy {table} (run_id, key, data) from '{path}'")),
            before=lambda: sql(self.url, f"TRUNCATE {table}"),
        )
        with open(count_file) as f:
            assert int(f.read()) == n
        pair.target = "<= 1.1x"
        pair.ok = pair.median("a") <= 1.1 * pair.median("b")
        pair.note = f"{nbytes / 1e6:.0f} MB of COPY text"
        sql(self.url, f"DROP TABLE {table}")
        os.unlink(path)
        return pair

    # (2) shard vs psql \copy (SELECT ...) TO; deepest vs first
    def shard(self) -> list[Pair]:
        n, per = self.size["rows"], self.size["shard_rows"]
        table = "bench_rows"
        path = os.path.join(self.work, "rows.copy")
        if not os.path.exists(path):
            write_copy_file(path, n)
        sql(self.url, f"DROP TABLE IF EXISTS {table}")
        sql(
            self.url,
            f"CREATE TABLE {table} (run_id text NOT NULL, key bigint NOT NULL, data json NOT NULL, "
            "PRIMARY KEY (run_id, key))",
        )
        subprocess.run(self.psql(f"\\copy {table} (run_id, key, data) from '{path}'"), check=True)
        sql(self.url, f"VACUUM ANALYZE {table}")
        store = os.path.join(self.work, "shard-store")
        out = os.path.join(self.work, "psql-shard.jsonl")

        def shard_cmd(index: int, lo: int, hi: int) -> list[str]:
            item = json.dumps({"index": index, "lo": lo, "hi": hi, "rows": hi - lo + 1})
            return [PY, "-m", "workers.shard", "--shard", item, "--run-id", RUN_ID]

        def common(index: int, lo: int, hi: int) -> list[str]:
            return [*shard_cmd(index, lo, hi), "--table", table, "--store", store, "--force"]

        def raw(lo: int, hi: int) -> list[str]:
            q = (
                f"select data from {table} where run_id = '{RUN_ID}' and key >= {lo} "
                f"and key <= {hi} order by key"
            )
            return self.psql(f"\\copy ({q}) to '{out}'")

        last = n // per - 1
        first_lo, first_hi = 1, per
        deep_lo, deep_hi = last * per + 1, (last + 1) * per

        def versus_psql(lo: int, hi: int, label: str) -> Pair:
            rows = hi - lo + 1
            pair = Pair("shard", f"shard {rows} rows ({label})", "psql \\copy (select) to file")
            to_first_row: list[float] = []

            def shard() -> Sample:
                sample = run(common(0, lo, hi), env=self.env)
                rec = orjson.loads(Path(store, "commits", "part-00000.json").read_bytes())
                to_first_row.append(rec["started"] - sample.started + rec["first_row_s"])
                return sample

            alternate(pair, self.runs, shard, lambda: run(raw(lo, hi)), before=settle)
            part0 = Path(store, "parts", "part-00000.jsonl").read_bytes()
            if part0 != Path(out).read_bytes():
                raise RuntimeError("shard output differs from psql's for the same rows")
            record = orjson.loads(Path(store, "commits", "part-00000.json").read_bytes())
            # The target is for a 1M-row shard; smaller ones pay start-up more.
            limit = 1.5 if rows >= 1_000_000 else 2.0
            pair.target = f"<= {limit}x"
            pair.ok = pair.median("a") <= limit * pair.median("b")
            fr = statistics.median(to_first_row[1:])  # [0] is the warm-up
            pair.note = (
                f"{len(part0) / 1e6:.1f} MB out; process start to first row {fr:.3f} s, "
                f"then {pair.median('a') - fr:.3f} s for the rows, commit and exit "
                f"(psql: {pair.median('b'):.3f} s in all); first_row_s={record['first_row_s']}; "
                f"CPU {pair.cpu('a'):.3f} s vs {pair.cpu('b'):.3f} s"
            )
            pair.work = rows
            return pair

        first = versus_psql(first_lo, first_hi, "first")
        versus = [first]
        if per < n:
            versus.append(versus_psql(1, n, "whole table"))

        deep = Pair(
            "shard depth",
            f"shard {per} rows (deepest, keys {deep_lo}..)",
            "shard (first)",
            work=per,
        )
        alternate(
            deep,
            self.runs,
            lambda: run(common(last, deep_lo, deep_hi), env=self.env),
            lambda: run(common(0, first_lo, first_hi), env=self.env),
            before=settle,
        )
        deep.target = "<= 1.10x"
        deep.ok = deep.median("a") <= 1.10 * deep.median("b")
        self._shard = (common(0, first_lo, first_hi), store)
        return [*versus, deep, *self._resume(table, shard_cmd)]

    # (2b) checkpoints: their cost on a whole-table shard, and a retry after a kill at 90%
    def _resume(self, table: str, shard_cmd: Callable[[int, int, int], list[str]]) -> list[Pair]:
        n = self.size["rows"]
        from workers.checkpoints import DEFAULT_CHECKPOINT_ROWS

        # The default where the table holds 10 chunks of it (full size), else 10 chunks.
        every = min(DEFAULT_CHECKPOINT_ROWS, n // 10)
        store = os.path.join(self.work, "resume-store")
        base = [*shard_cmd(0, 1, n), "--table", table, "--store", store]
        ckpt = os.path.join(store, "parts", ".part-00000.jsonl.checkpoint")
        record = os.path.join(store, "commits", "part-00000.json")

        cost = Pair(
            "checkpoints",
            f"shard {n} rows, checkpoint every {every}",
            "same, --checkpoint-rows 0",
            work=n,
        )
        alternate(
            cost,
            self.runs,
            lambda: run([*base, "--force", "--checkpoint-rows", str(every)], env=self.env),
            lambda: run([*base, "--force", "--checkpoint-rows", "0"], env=self.env),
            before=settle,
        )
        cost.target = "<= 1.05x"
        cost.ok = cost.median("a") <= 1.05 * cost.median("b")
        clean_part = Path(store, "parts", "part-00000.jsonl").read_bytes()

        reread: list[int] = []

        def killed_at_90_percent() -> int:
            """Start the shard and SIGKILL it once its checkpoint holds 90% of the rows; the
            shard's exit code (-9 when the kill landed before it finished by itself)."""
            shutil.rmtree(store, ignore_errors=True)
            proc = subprocess.Popen(
                [*base, "--checkpoint-rows", str(every)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                while proc.poll() is None:
                    with contextlib.suppress(FileNotFoundError, ValueError):
                        if orjson.loads(Path(ckpt).read_bytes())["rows_in"] >= 0.9 * n:
                            break
                    time.sleep(0.002)
            finally:
                proc.kill()
                proc.wait()
            return proc.returncode

        def killed_then_retried() -> Sample:
            # The last tenth of a small (quick) table can be written before the poll sees the
            # 90% checkpoint: then the shard has finished, and the kill is tried again.
            for _ in range(KILL_TRIES):
                code = killed_at_90_percent()
                if code == -9:
                    break
            else:
                raise RuntimeError(
                    f"the shard to kill exited {code} before 90%, {KILL_TRIES} times"
                )
            sample = run([*base, "--checkpoint-rows", str(every)], env=self.env)
            reread.append(orjson.loads(Path(record).read_bytes())["rows_read"])
            if Path(store, "parts", "part-00000.jsonl").read_bytes() != clean_part:
                raise RuntimeError("the resumed part differs from a clean run's")
            return sample

        resume = Pair(
            "resume",
            f"shard retry after a kill at 90% of {n} rows",
            f"clean shard of {n} rows",
        )
        alternate(
            resume,
            self.runs,
            killed_then_retried,
            lambda: run([*base, "--force", "--checkpoint-rows", str(every)], env=self.env),
            before=settle,
        )
        # The retry still pays start-up and re-reads (sha256) the 90% it keeps from local disk.
        resume.target = "<= 0.5x, reads <= 15% of rows"
        most = max(reread)
        resume.ok = resume.median("a") <= 0.5 * resume.median("b") and most <= 0.15 * n
        resume.note = (
            f"killed just after its checkpoint at 90%; the retry read "
            f"{statistics.median(reread):,.0f} rows (at most {most:,}) of {n:,}, "
            "verified the kept chunks' sha256 and published the clean run's bytes"
        )
        return [cost, resume]

    # (3) merge vs jq -s . and cat: the same bytes in 10, 100 and 1,000 parts, and one huge part
    def merge(self) -> list[Pair]:
        pairs: list[Pair] = []
        total_mb = self.size["merge_mb"]
        for parts in MERGE_PARTS:
            rows = max(1, total_mb * 1_000_000 // ROW_BYTES // parts)
            pairs.extend(self._merge_rows(parts, rows, with_jq=True))
        rows = self.size["huge_mb"] * (1 << 20) // ROW_BYTES
        pairs.extend(self._merge_rows(1, rows, with_jq=False))
        return pairs

    def _merge_rows(self, parts: int, part_rows: int, *, with_jq: bool) -> list[Pair]:
        """Plan mode (jsonl and json) against cat of the same parts; --glob against jq -s .
        (or, for the huge part, which jq would hold whole, against cat) with peak RSS."""
        store = os.path.join(self.work, f"merge-{parts}x{part_rows}")
        self.log(f"merge: writing {parts} parts of {part_rows} rows")
        total = write_parts(store, parts, part_rows)
        files = sorted(str(p) for p in Path(store, "parts").glob("part-*.jsonl"))
        out_w = os.path.join(self.work, "merged-workers")
        out_r = os.path.join(self.work, "merged-raw")
        size = f"{total / 1e6:,.0f} MB"
        label = f"merge {parts} x {part_rows:,} rows ({size})"
        pairs = []

        def cat() -> Sample:
            return run(["cat", *files], stdout_path=out_r)

        # Where plan mode's time goes, measured beside it: one sha256 pass over the same
        # bytes with the interpreter's start (merge makes two, the parts' against their records
        # and the output's for the summary, on two threads), and cat made durable (merge fsyncs
        # before publishing).
        floors = {
            # hashlib is OpenSSL's sha256, what merge uses (coreutils' sha256sum is slower)
            "one sha256 pass (hashlib)": [PY, "-c", _SHA256_FILES, *files],
            "cat + sync": ["sh", "-c", 'cat "$@" > "$0" && sync "$0"', out_r, *files],
        }
        floor = ", ".join(
            f"{name} {median_seconds(cmd, self.runs):.3f} s" for name, cmd in floors.items()
        )

        for fmt, limit in (("jsonl", 2.0), ("json", 2.5)):
            cmd = [PY, "-m", "workers.merge", "--store", store, "--format", fmt]
            cmd += ["--output", out_w, "--summary", out_w + ".summary"]
            plan = Pair("merge", f"{label} --store --format {fmt}", "cat (I/O floor)")
            plan.work, plan.unit = total, "bytes"
            # Each run starts with no dirty pages: merge's fsync must not wait for cat's output.
            alternate(plan, self.runs, lambda cmd=cmd: run(cmd, env=self.env), cat, before=settle)
            if fmt == "jsonl" and not filecmp.cmp(out_w, out_r, shallow=False):
                raise RuntimeError("merge --format jsonl differs from cat of the same parts")
            ratio = plan.median("a") / plan.median("b")
            plan.target = f"<= {limit}x, peak <= 64 MB"
            plan.ok = ratio <= limit and plan.peak_mb("a") <= 64
            plan.note = (
                f"{size} in {parts} parts: {ratio:.2f}x cat (cat copies in the kernel); "
                f"CPU {plan.cpu('a'):.3f} s vs {plan.cpu('b'):.3f} s; floors: {floor}"
            )
            pairs.append(plan)

        glob_cmd = [PY, "-m", "workers.merge", "--glob", f"{store}/parts/part-*.jsonl"]
        glob_cmd += ["--output", out_w]
        if with_jq:
            jq = Pair("merge", f"{label} --glob", "jq -s .", work=total, unit="bytes")
            alternate(
                jq,
                self.runs,
                lambda: run(glob_cmd, env=self.env),
                lambda: run(["jq", "-s", ".", *files], stdout_path=out_r),
            )
            # Same values as jq's, whatever the whitespace.
            if orjson.loads(Path(out_w).read_bytes()) != orjson.loads(Path(out_r).read_bytes()):
                raise RuntimeError("merge output differs from jq -s .")
            faster = jq.median("b") / jq.median("a")
            jq.target = ">= 10x faster, peak <= 64 MB"
            jq.ok = faster >= 10 and jq.peak_mb("a") <= 64
            jq.note = (
                f"{size} in {parts} parts; {faster:.1f}x faster than jq; "
                f"CPU {jq.cpu('a'):.3f} s vs {jq.cpu('b'):.3f} s"
            )
            pairs.append(jq)
        else:
            full = Pair("merge", f"{label} --glob", "cat (I/O floor)", work=total, unit="bytes")
            alternate(full, self.runs, lambda: run(glob_cmd, env=self.env), cat)
            ratio = full.median("a") / full.median("b")
            full.target = "peak <= 64 MB"
            full.ok = full.peak_mb("a") <= 64
            full.note = (
                f"{size} in one part, every value validated: {ratio:.1f}x cat "
                f"(jq -s . would hold it all); CPU {full.cpu('a'):.3f} s vs {full.cpu('b'):.3f} s"
            )
            pairs.append(full)
        shutil.rmtree(store, ignore_errors=True)
        for path in (out_w, out_r, out_w + ".summary"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return pairs

    # (4) start-up
    def startup(self) -> list[Pair]:
        out: list[Pair] = []
        bare = [PY, "-c", "pass"]
        help_cmd = [PY, "-m", "workers.shard", "--help"]
        runs = max(self.runs, 10)
        h = Pair("start-up", "shard --help", "python -c pass")
        alternate(h, runs, lambda: run(help_cmd, env=self.env), lambda: run(bare, env=self.env))
        mods = imported_modules(help_cmd[1:], self.env)
        heavy = sorted(mods & ({"psycopg", "fsspec", "sqlalchemy", "s3fs", "gcsfs"} | COLUMNAR))
        h.target = "< 150 ms, no psycopg/fsspec/sqlalchemy/pyarrow"
        h.ok = h.median("a") < 0.150 and not heavy
        h.note = f"--help imports: {', '.join(heavy) or 'none of psycopg/fsspec/sqlalchemy/s3fs/gcsfs/pyarrow/pandas/polars'}"
        out.append(h)

        # Process start to first row: the commit record's wall-clock start plus first_row_s,
        # against connecting from the same interpreter and reading one row (the floor).
        if not hasattr(self, "_shard"):
            self.shard()
        cmd, store = self._shard
        # Both sides to their first row: the floor prints the clock once its row is in,
        # as the shard's commit record says when its first row came.
        connect = [
            PY,
            "-c",
            "import psycopg,sys,time; c=psycopg.connect(sys.argv[1]); "
            "c.execute('select 1').fetchone(); print(repr(time.time()))",
            self.url,
        ]
        fr = Pair(
            "start-up", "shard: process start to first row", "python + psycopg connect + select 1"
        )
        firsts: list[float] = []
        floors: list[float] = []

        def first_row() -> Sample:
            s = run(cmd, env=self.env)
            rec = orjson.loads(Path(store, "commits", "part-00000.json").read_bytes())
            firsts.append(rec["started"] - s.started + rec["first_row_s"])
            return s

        def floor_row() -> Sample:
            s = run(connect, env=self.env, capture=True)
            floors.append(float(s.stdout) - s.started)
            return s

        alternate(fr, self.runs, first_row, floor_row)
        fr.a_derived, fr.b_derived = firsts[1:], floors[1:]  # the first is the warm-up
        fr.a_seconds = statistics.median(fr.a_derived)
        fr.b_seconds = statistics.median(fr.b_derived)
        mods = imported_modules(cmd[1:], self.env)
        heavy = sorted(mods & ({"fsspec", "sqlalchemy", "s3fs", "gcsfs"} | COLUMNAR))
        fr.target = "no sqlalchemy/fsspec/pyarrow on PostgreSQL"
        fr.ok = not heavy
        fr.note = (
            f"shard on PostgreSQL imports: "
            f"{', '.join(heavy) or 'no sqlalchemy/fsspec/s3fs/gcsfs/pyarrow/pandas/polars'}"
        )
        out.append(fr)
        return out

    # (6) the local runner: wall time as the fan-out grows, against the same steps by xargs
    def runner(self) -> list[Pair]:
        sizes = RUNNER_SIZES_QUICK if self.size["runs"] < 5 else RUNNER_SIZES
        runs = 1 if self.size["runs"] < 5 else self.runs
        # The embedded SQLite database and a local folder: the runner's own default.
        env = {k: v for k, v in self.env.items() if k != "WORKERS_DATABASE_URL"}
        folder = os.path.join(self.work, "runner")
        pairs: list[Pair] = []
        for n in sizes:
            pair = Pair(
                "runner",
                f"workers run workers-pipeline, {n} shards",
                f"the same steps, xargs -P {PARALLELISM}",
                work=n,
                unit="shards",
                digits=1,
            )
            alternate(
                pair,
                runs,
                functools.partial(run, _runner_cmd(folder, n), env=env),
                functools.partial(run, _xargs_cmd(folder, n), env=env),
                before=lambda: shutil.rmtree(folder, ignore_errors=True),
            )
            pair.target = "info: see runner fit"
            pairs.append(pair)
        fit = Pair(
            "runner fit",
            "workers run: wall per shard (slope)",
            f"xargs -P {PARALLELISM}: wall per shard (slope)",
        )
        for p in pairs:
            fit.a.extend(p.a)
            fit.b.extend(p.b)
        a0, a1 = _fit([(p.work, p.median("a")) for p in pairs])
        b0, b1 = _fit([(p.work, p.median("b")) for p in pairs])
        cores = min(PARALLELISM, os.cpu_count() or 1)
        overhead = (a1 - b1) * cores
        fit.a_seconds, fit.b_seconds = a1, b1
        fit.target = "per-pod overhead <= 0.3 s"
        fit.ok = overhead <= 0.3
        fit.note = (
            f"wall = {a0:.2f} s + {a1 * 1000:.0f} ms x shards (xargs: {b0:.2f} s + "
            f"{b1 * 1000:.0f} ms x shards) at parallelism {PARALLELISM} on {os.cpu_count()} "
            f"cores; per-pod overhead (slope difference x {cores} busy cores) "
            f"{overhead:.3f} s; shards {', '.join(str(int(p.work)) for p in pairs)}"
        )
        self._runner_fit = (a0, a1)
        return [*pairs, fit]

    # (7) 10,000 shards through the local runner, against the fit's prediction
    def wide(self) -> list[Pair]:
        if not hasattr(self, "_runner_fit"):
            self.runner()
        a0, a1 = self._runner_fit
        env = {k: v for k, v in self.env.items() if k != "WORKERS_DATABASE_URL"}
        folder = os.path.join(self.work, "runner")
        shutil.rmtree(folder, ignore_errors=True)
        p = Pair(
            "runner wide",
            f"workers run workers-pipeline, {WIDE_SHARDS:,} shards",
            "the runner fit's prediction",
            work=WIDE_SHARDS,
            unit="shards",
            digits=1,
        )
        p.a.append(run(_runner_cmd(folder, WIDE_SHARDS), env=env))
        p.b_seconds = a0 + a1 * WIDE_SHARDS
        p.target = "info: linear growth (ratio near 1)"
        p.note = f"one run; {p.median('a') / WIDE_SHARDS * 1000:.0f} ms per shard"
        shutil.rmtree(folder, ignore_errors=True)
        return [p]

    # (5) split for 500 billion rows
    def split(self) -> list[Pair]:
        cmd = [PY, "-m", "workers.split", "--count", "500000000000", "--rows-per-shard"]
        cmd += ["1000000000"]
        p = Pair("split", "split 5e11 rows / 1e9 per shard", "python -c pass")
        alternate(
            p,
            max(self.runs, 10),
            lambda: run(cmd, env=self.env, capture=True),
            lambda: run([PY, "-c", "pass"], env=self.env),
        )
        size = len(p.a[-1].stdout)
        shards = len(orjson.loads(p.a[-1].stdout))
        p.target = "< 0.5 s, output < 64 KB"
        p.ok = p.median("a") < 0.5 and size < 64 * 1024
        p.note = f"{shards} shards, {size} bytes of output"
        return [p]

    # (8) the columnar path: a typed table through Arrow batches into Parquet parts
    def columnar(self) -> list[Pair]:
        pairs: list[Pair] = []
        for n in self.columnar_rows:
            pairs.extend(self._columnar(n))
        pairs.extend(self._columnar_merge(self.columnar_rows[-1]))
        sql(self.url, f"DROP TABLE {TYPED_TABLE}")
        return pairs

    def _typed_table(self, n: int) -> None:
        """TYPED_TABLE of ``n`` rows, made by the server (keys 1..n, every tenth score null)."""
        self.log(f"columnar: making {TYPED_TABLE} of {n:,} rows")
        sql(self.url, f"DROP TABLE IF EXISTS {TYPED_TABLE}")
        sql(self.url, f"CREATE TABLE {TYPED_TABLE} ({TYPED_COLUMNS})")
        sql(self.url, TYPED_ROWS.format(table=TYPED_TABLE, n=n))
        sql(self.url, f"VACUUM ANALYZE {TYPED_TABLE}")

    def _columnar_store(
        self, name: str, n: int, per: int, variant: tuple[str, str, str]
    ) -> tuple[list[str], str]:
        """A plan over TYPED_TABLE pinning the variant's part format, batch format and
        processor (split --from-db, ``per`` rows a shard), and the command of its shard 0."""
        part_format, batch_format, processor = variant
        store = os.path.join(self.work, f"columnar-{name}")
        shutil.rmtree(store, ignore_errors=True)
        opts = [*TYPED_SOURCE, "--batch-format", batch_format]
        opts += ["--processor", f"columnar_processors:{processor}"]
        split = [PY, "-m", "workers.split", "--from-db", "--rows-per-shard", str(per)]
        split += ["--max-shards", str(max(1, n // per)), "--run-id", RUN_ID, "--store", store]
        run([*split, "--part-format", part_format, *opts], env=self._columnar_env)
        shard = [PY, "-m", "workers.shard", "--shard", "0", "--run-id", RUN_ID, "--store", store]
        return [*shard, *opts], store

    @property
    def _columnar_env(self) -> dict[str, str]:
        # The processors (benchmarks/columnar_processors.py) import as a user's module would.
        return {**self.env, "PYTHONPATH": os.pathsep.join((str(ROOT), str(BENCH)))}

    def _columnar(self, n: int) -> list[Pair]:
        """pyarrow into Parquet against psql, and against the rows path into JSON Lines."""
        self._typed_table(n)
        env = self._columnar_env
        shards = {
            name: self._columnar_store(f"{name}-{n}", n, n, variant)
            for name, variant in COLUMNAR_VARIANTS.items()
        }
        out = os.path.join(self.work, "psql-typed.copy")
        columns = ", ".join(c.split()[0] for c in TYPED_COLUMNS.split(", "))
        psql = self.psql(f"\\copy (select {columns} from {TYPED_TABLE} order by key) to '{out}'")

        def shard(name: str) -> Callable[[], Sample]:
            cmd, _ = shards[name]
            return lambda: run([*cmd, "--force"], env=env)

        def part(name: str) -> Path:
            fmt = COLUMNAR_VARIANTS[name][0]
            return Path(layout_part(shards[name][1], 0, fmt))

        def record(name: str) -> dict[str, Any]:
            rec = orjson.loads(Path(shards[name][1], "commits", "part-00000.json").read_bytes())
            if rec["rows"] != n:
                raise RuntimeError(f"the {name} shard wrote {rec['rows']} rows, not {n}")
            return rec

        rows = f"{n:,} rows"
        raw = Pair(
            "columnar",
            f"shard --batch-format pyarrow, return batch, Parquet, {rows}",
            "psql \\copy (select) to file",
            work=n,
        )
        alternate(raw, self.runs, shard("arrow_pass"), lambda: run(psql), before=settle)
        rec = record("arrow_pass")
        raw.target = "<= 1.5x"
        raw.ok = raw.median("a") <= 1.5 * raw.median("b")
        raw.note = (
            f"{TYPED_DESCRIPTION}; Parquet part {rec['bytes'] / 1e6:.1f} MB, psql's COPY text "
            f"{os.path.getsize(out) / 1e6:.1f} MB; first_row_s={rec['first_row_s']}; "
            f"CPU {raw.cpu('a'):.3f} s vs {raw.cpu('b'):.3f} s"
        )
        os.unlink(out)

        pairs = [raw]
        for arrow_work, rows_work, arrow, rows_side in (
            ("return batch", "return rows", "arrow_pass", "rows_pass"),
            ("enrich (+amount_cents)", "enrich (+amount_cents)", "arrow_enrich", "rows_enrich"),
        ):
            p = Pair(
                "columnar",
                f"shard --batch-format pyarrow, {arrow_work}, Parquet, {rows}",
                f"shard --batch-format rows, {rows_work}, JSON Lines",
                work=n,
            )
            alternate(p, self.runs, shard(arrow), shard(rows_side), before=settle)
            for name in (arrow, rows_side):
                record(name)
            faster = p.median("b") / p.median("a")
            p.target = ">= 3x faster"
            p.ok = faster >= 3
            p.note = (
                f"the rows shard takes {faster:.2f}x the columnar one's time; "
                f"CPU {p.cpu('a'):.3f} s vs {p.cpu('b'):.3f} s; "
                f"peak {p.peak_mb('a'):.0f} vs {p.peak_mb('b'):.0f} MB"
            )
            if arrow == "arrow_enrich":
                check_enrich(part(arrow), part(rows_side), n)
                p.note += "; amount_cents of both parts summed: equal"
            pairs.append(p)

        # Bytes of the same rows, Parquet against JSON Lines: the pass-through pair's parts
        # (its times and peaks are that pair's, shown again; the ratio here is of the bytes).
        passthrough = pairs[1]
        pq_bytes, jl_bytes = part("arrow_pass").stat().st_size, part("rows_pass").stat().st_size
        size = Pair(
            "part bytes",
            f"Parquet part {pq_bytes / 1e6:.1f} MB ({rows}, return batch)",
            "JSON Lines part of the same rows",
            a=passthrough.a,
            b=passthrough.b,
        )
        size.ratio = pq_bytes / jl_bytes
        size.target = "<= 1/4 of the bytes"
        size.ok = size.ratio <= 0.25
        size.note = (
            f"ratio of bytes: {pq_bytes:,} / {jl_bytes:,} = 1/{jl_bytes / pq_bytes:.1f} "
            "(zstd, the workers' fixed options); seconds and peaks: the two shards above"
        )
        pairs.append(size)
        for _, store in shards.values():
            shutil.rmtree(store, ignore_errors=True)
        return pairs

    def _columnar_merge(self, n: int) -> list[Pair]:
        """merge --format parquet (against cat of the parts) and --format dataset (against one
        sha256 pass over them) of the typed table's n rows in 10, 100 and 1,000 Parquet parts."""
        runs = 1 if self.size["runs"] < 5 else self.runs
        pairs: list[Pair] = []
        for parts in MERGE_PARTS:
            per = max(1, n // parts)
            store = self._parquet_parts(n, per)
            files = [layout_part(store, i, "parquet") for i in range(n // per)]
            total = sum(os.path.getsize(f) for f in files)
            out_w = os.path.join(self.work, "merged.parquet")
            out_r = os.path.join(self.work, "merged-raw")
            label = f"merge {len(files)} x {per:,} rows ({total / 1e6:,.1f} MB Parquet)"
            # parquet copies each part's row groups byte for byte (cat is its floor); dataset
            # copies nothing but checks every part's sha256 (one pass is its floor).
            raws = {
                "parquet": (
                    "cat (I/O floor)",
                    functools.partial(run, ["cat", *files], stdout_path=out_r),
                ),
                "dataset": (
                    "one sha256 pass (hashlib)",
                    functools.partial(run, [PY, "-c", _SHA256_FILES, *files], env=self.env),
                ),
            }
            for fmt, (raw_label, raw_fn) in raws.items():
                cmd = [PY, "-m", "workers.merge", "--store", store, "--format", fmt]
                cmd += ["--summary", os.path.join(self.work, "merged.summary")]
                if fmt == "parquet":
                    cmd += ["--output", out_w]
                p = Pair("merge", f"{label} --format {fmt}", raw_label, work=total, unit="bytes")
                alternate(p, runs, lambda cmd=cmd: run(cmd, env=self.env), raw_fn, before=settle)
                p.target = "peak <= 128 MB"
                p.ok = p.peak_mb("a") <= 128
                p.note = f"{n:,} rows; CPU {p.cpu('a'):.3f} s vs {p.cpu('b'):.3f} s; "
                p.note += check_merged(store, fmt, out_w, n, len(files))
                pairs.append(p)
            shutil.rmtree(store, ignore_errors=True)
            for path in (out_w, out_r):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return pairs

    def _parquet_parts(self, n: int, per: int) -> str:
        """A store of n // per Parquet parts of TYPED_TABLE: one real shard (the first), its
        part and commit record copied to every other shard of the plan with that shard's
        bounds (the same bytes: a merge checks records and bytes, not the keys inside)."""
        from workers import layout

        parts = n // per
        self.log(f"columnar: writing {parts} Parquet parts of {per:,} rows")
        cmd, store = self._columnar_store(f"merge-{parts}", n, per, COLUMNAR_VARIANTS["arrow_pass"])
        run(cmd, env=self._columnar_env)
        first = layout_part(store, 0, "parquet")
        record = orjson.loads(Path(layout.commit_url(store, 0)).read_bytes())
        plan = layout.read_plan(layout.plan_url(store))
        for s in plan.shards[1:]:
            shutil.copyfile(first, layout_part(store, s.index, "parquet"))
            rec = record | {"index": s.index, "lo": s.lo, "hi": s.hi, "rows_in": s.rows}
            rec["path"] = f"parts/part-{s.index:05d}.parquet"
            Path(layout.commit_url(store, s.index)).write_bytes(orjson.dumps(rec))
        return store


PARALLELISM = 10
"""The pipeline template's ``parallelism``: the xargs baseline runs as many at once."""
RUNNER_SIZES = (10, 50, 200)
RUNNER_SIZES_QUICK = (10, 50)
WIDE_SHARDS = 10_000


def _runner_cmd(folder: str, n: int) -> list[str]:
    """The pipeline template on this machine: one row per shard, so the work is the overhead."""
    return [
        *(PY, "-m", "workers", "run", "workers-pipeline", "--manifests", str(ROOT / "manifests")),
        *("--runs", folder, "-p", f"rows={n}", "-p", "rows-per-shard=1"),
        *("-p", f"max-shards={max(n, 200)}"),
    ]


def _xargs_cmd(folder: str, n: int) -> list[str]:
    """The same four steps as plain processes: shards by index, PARALLELISM at a time."""
    script = f"""set -e
mkdir -p {folder}
export WORKERS_DATABASE_URL=sqlite:///{folder}/workers.db
{PY} -m workers.produce --rows {n} --run-id {RUN_ID} --count-file {folder}/count
{PY} -m workers.split --count-file {folder}/count --rows-per-shard 1 --max-shards {max(n, 200)} \
  --run-id {RUN_ID} --store {folder}/store --shard-count-file {folder}/shard-count >/dev/null
seq 0 $(($(cat {folder}/shard-count) - 1)) | xargs -P {PARALLELISM} -I{{}} \
  {PY} -m workers.shard --shard {{}} --run-id {RUN_ID} --store {folder}/store
{PY} -m workers.merge --store {folder}/store
"""
    return ["sh", "-c", script]


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares intercept and slope of (x, y) points."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - slope * mx, slope


# --- the columnar rows ------------------------------------------------------------------------

BENCH = Path(__file__).resolve().parent
TYPED_TABLE = "bench_typed"
TYPED_COLUMNS = (
    "key bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2) NOT NULL, "
    "score double precision, active boolean NOT NULL, day date NOT NULL, "
    "created timestamptz NOT NULL, attrs jsonb NOT NULL"
)
TYPED_ROWS = """INSERT INTO {table}
SELECT g, 'customer ' || (g % 10007), ((g * 7919) % 10000000) / 100.0,
  CASE WHEN g % 10 = 0 THEN NULL ELSE ((g * 2654435761) % 1000000) / 1e6 END, g % 3 = 0,
  date '2020-01-01' + (g % 2000)::int, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 s',
  jsonb_build_object('tier', (array['gold', 'silver', 'bronze'])[1 + g % 3], 'visits', g % 50)
FROM generate_series(1::bigint, {n}) AS g"""
TYPED_DESCRIPTION = (
    "8 columns: bigint key, text, numeric(12,2), double (10% null), bool, date, timestamptz, jsonb"
)
TYPED_SOURCE = ["--table", TYPED_TABLE, "--key-column", "key", "--run-column", ""]
TYPED_SOURCE += ["--data-column", ""]
COLUMNAR_VARIANTS = {
    # name: part format, batch format, processor (benchmarks/columnar_processors.py)
    "arrow_pass": ("parquet", "pyarrow", "arrow_passthrough"),
    "rows_pass": ("jsonl", "rows", "rows_passthrough"),
    "arrow_enrich": ("parquet", "pyarrow", "arrow_enrich"),
    "rows_enrich": ("jsonl", "rows", "rows_enrich"),
}


def layout_part(store: str, index: int = 0, fmt: str = "jsonl") -> str:
    from workers import layout

    return layout.part_url(store, index, fmt)


def check_enrich(parquet: Path, jsonl: Path, n: int) -> None:
    """Both enrich parts hold n rows with the same amount_cents (summed)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(parquet, columns=["amount_cents"])
    total, lines = 0, 0
    with open(jsonl, "rb") as f:
        for line in f:  # rows_enrich appends the field: each line ends ',"amount_cents":N}'
            total += int(line[line.rindex(b":") + 1 : -2])
            lines += 1
    if (table.num_rows, pc.sum(table["amount_cents"]).as_py()) != (n, total) or lines != n:
        raise RuntimeError("the pyarrow and rows enrich parts differ")


def check_merged(store: str, fmt: str, output: str, n: int, parts: int) -> str:
    """What merge published holds the n rows (a note's words): the file, or the manifest."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(output).metadata
        if meta.num_rows != n:
            raise RuntimeError(f"merged.parquet holds {meta.num_rows} rows, not {n}")
        return (
            f"one file of {meta.num_row_groups} row groups, {os.path.getsize(output) / 1e6:.1f} MB"
        )
    manifest = orjson.loads(Path(store, "manifest.json").read_bytes())
    if len(manifest["files"]) != parts or sum(p["rows"] for p in manifest["parts"]) != n:
        raise RuntimeError("the dataset manifest does not list every part's rows")
    return (
        f"manifest of {parts} parts, {os.path.getsize(Path(store, 'manifest.json')) / 1e3:.0f} KB"
    )


if __name__ == "__main__":
    raise SystemExit(main())
