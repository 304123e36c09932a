"""User code cannot lose, change or mix rows behind an exit 0 (issue 20, "Trust").

Each test runs the steps as real processes over SQLite and PostgreSQL (or the pipeline through
``workers run``) with user code written into the test's own folder: a processor or generator
that swallows the step deadline, returns NaN, 42 or an object, prints, is fixed in a helper
module between two attempts or before ``--resume``, or is named with a typo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import Pipeline, RunStep, error_of, log_lines


def write_code(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    return folder


@pytest.fixture
def pipe(run_step: RunStep, db_url: str, tmp_path: Path, code: Path) -> Pipeline:
    return Pipeline(
        run_step, db_url, str(tmp_path / "store"), tmp_path, env={"PYTHONPATH": str(code)}
    )


def parts(pipe: Pipeline, index: int = 0) -> list[Any]:
    return [json.loads(line) for line in pipe.read(f"parts/part-{index:05d}.jsonl").splitlines()]


# ------------------------------------------------------------------ the step deadline

SLOW = """\
    import os, time

    def _stall(handler):
        open(os.environ["MARK"], "w").close()  # the deadline passes inside user code
        if handler == "none":
            time.sleep(60)
        elif handler == "Exception":
            try:
                time.sleep(60)
            except Exception:
                pass  # "skip the bad row"
        else:
            try:
                time.sleep(60)
            except BaseException:
                pass

    def processor(batch):
        out = []
        for row in batch:
            if row["id"] == 3:
                _stall(os.environ["HANDLER"])
                continue
            out.append(row)
        return out

    def generator(rows):
        for i in range(1, rows + 1):
            if i == 3:
                _stall(os.environ["HANDLER"])
                continue
            yield {"id": i}
"""

HANDLERS = ["none", "Exception", "BaseException"]


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_processor_cannot_swallow_the_deadline(
    pipe: Pipeline, code: Path, tmp_path: Path, handler: str
) -> None:
    write_code(code, {"slow.py": SLOW})
    pipe.produce(10)
    [item] = pipe.split(10)
    mark = tmp_path / "entered"
    env = {"WORKERS_TIMEOUT": "4", "HANDLER": handler, "MARK": str(mark)}
    proc = pipe.shard(item, "--processor", "slow:processor", env=env)
    assert mark.exists(), proc.stderr
    assert proc.returncode == 75, proc.stderr
    err = error_of(proc)
    assert err["cause"] == "deadline"
    assert "step deadline of 4s exceeded" in err["message"]
    assert not pipe.exists("commits/part-00000.json")
    assert not pipe.exists("parts/part-00000.jsonl")


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_generator_cannot_swallow_the_deadline(
    pipe: Pipeline, code: Path, tmp_path: Path, handler: str
) -> None:
    write_code(code, {"slow.py": SLOW})
    assert pipe.produce(7) == 7  # the run's committed generation so far
    mark = tmp_path / "entered"
    count = tmp_path / "count-2"
    env = {"WORKERS_TIMEOUT": "4", "HANDLER": handler, "MARK": str(mark)}
    proc = pipe.step(
        "produce",
        "--rows",
        "10",
        "--generator",
        "slow:generator",
        "--run-id",
        pipe.run_id,
        "--count-file",
        str(count),
        env=env,
    )
    assert mark.exists(), proc.stderr
    assert proc.returncode == 75, proc.stderr
    assert error_of(proc)["cause"] == "deadline"
    assert not count.exists()
    # Nothing was committed: the run still holds the 7 rows of its earlier generation.
    split = pipe.step("split", "--from-db", "--run-id", pipe.run_id, "--rows-per-shard", "5")
    assert split.returncode == 0, split.stderr
    assert sum(item["rows"] for item in json.loads(split.stdout)) == 7


# ------------------------------------------------------------------ NaN and ±Infinity

NON_FINITE = """\
    def processor(batch):
        return [dict(r, nan=float("nan"), inf=float("inf"), ninf=float("-inf"),
                     nested=[{"x": float("nan")}], ok=1.5) for r in batch]

    def generator(rows):
        for i in range(1, rows + 1):
            yield {"id": i, "nan": float("nan"), "inf": float("inf"), "nested": [float("-inf")]}

    def passthrough(batch):
        return batch
"""


def test_a_processors_nan_and_infinity_are_the_documented_strings(
    pipe: Pipeline, code: Path
) -> None:
    write_code(code, {"nonfinite.py": NON_FINITE})
    pipe.produce(4)
    [item] = pipe.split(10)
    proc = pipe.shard(item, "--processor", "nonfinite:processor")
    assert proc.returncode == 0, proc.stderr
    for row in parts(pipe):
        assert row["nan"] == "NaN" and row["inf"] == "Infinity" and row["ninf"] == "-Infinity"
        assert row["nested"] == [{"x": "NaN"}] and row["ok"] == 1.5


def test_a_generators_nan_and_infinity_are_the_documented_strings(
    pipe: Pipeline, code: Path
) -> None:
    write_code(code, {"nonfinite.py": NON_FINITE})
    pipe.produce(3, "--generator", "nonfinite:generator")
    [item] = pipe.split(10)
    assert pipe.shard(item).returncode == 0
    assert parts(pipe) == [
        {"id": i, "nan": "NaN", "inf": "Infinity", "nested": ["-Infinity"]} for i in (1, 2, 3)
    ]


def _table_with_non_finite_doubles(db_url: str) -> None:
    values = [(1, "1.5"), (2, "'NaN'"), (3, "'Infinity'"), (4, "'-Infinity'"), (5, "NULL")]
    if db_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(db_url[len("sqlite:///") :]) as conn:
            conn.execute("CREATE TABLE doubles (key INTEGER PRIMARY KEY, v DOUBLE)")
            # SQLite stores NaN as NULL; ±Infinity it keeps.
            conn.executemany(
                "INSERT INTO doubles VALUES (?, ?)",
                [(1, 1.5), (2, float("nan")), (3, float("inf")), (4, float("-inf")), (5, None)],
            )
    else:
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE doubles (key bigint PRIMARY KEY, v double precision)")
            rows = ", ".join(f"({k}, {v}::double precision)" for k, v in values)
            conn.execute(f"INSERT INTO doubles VALUES {rows}")  # type: ignore[arg-type]


def test_a_double_is_the_same_json_through_identity_and_a_processor(
    pipe: Pipeline, code: Path
) -> None:
    write_code(code, {"nonfinite.py": NON_FINITE})
    _table_with_non_finite_doubles(pipe.db_url)
    source = ["--table", "doubles", "--run-column", "", "--data-column", ""]
    [item] = pipe.split_from_db(10, *source)
    assert pipe.shard(item, *source).returncode == 0
    identity = pipe.read("parts/part-00000.jsonl")
    proc = pipe.shard(item, *source, "--processor", "nonfinite:passthrough")
    assert proc.returncode == 0, proc.stderr
    assert pipe.read("parts/part-00000.jsonl") == identity
    want = [1.5, "NaN", "Infinity", "-Infinity", None]
    if pipe.db_url.startswith("sqlite"):
        want[1] = None  # SQLite itself stored NULL
    assert [row["v"] for row in parts(pipe)] == want


# ------------------------------------------------------------------ what a processor returns

RETURNS = """\
    def number(batch):
        return 42

    def an_object(batch):
        return [{"ok": 1}, {"when": object()}]

    def raising(batch):
        raise TypeError("not iterable, really")
"""


@pytest.mark.parametrize(
    ("func", "words", "line"),
    [
        ("number", "returned 42 (of type int), not an iterable of JSON values", 1),
        ("an_object", "returned a value that is not JSON-serializable (value 1 of its batch", 4),
        ("raising", "raised TypeError: not iterable, really", 8),
    ],
)
def test_a_bad_return_is_exit_3_named_with_the_users_file_and_line(
    pipe: Pipeline, code: Path, func: str, words: str, line: int
) -> None:
    write_code(code, {"returns.py": RETURNS})
    pipe.produce(3)
    [item] = pipe.split(10)
    proc = pipe.shard(item, "--processor", f"returns:{func}")
    assert proc.returncode == 3, proc.stderr
    err = error_of(proc)
    assert err["cause"] == "user-code"
    assert words in err["message"]
    assert f"{code / 'returns.py'}:{line})" in err["message"]
    if func != "raising":
        assert "raised" not in err["message"]
    assert not pipe.exists("commits/part-00000.json")


# ------------------------------------------------------------------ stdout is the declared output

CHATTY = """\
    import os, sys
    print("hello from import")
    os.write(1, b"raw bytes on fd 1\\n")

    def processor(batch):
        print("processing", len(batch))
        sys.stdout.write("no newline")
        os.write(1, b"more raw bytes\\n")
        return batch

    def generator(rows):
        print("generating")
        for i in range(rows):
            yield {"id": i + 1}
"""


def test_user_prints_never_reach_a_steps_stdout(pipe: Pipeline, code: Path) -> None:
    write_code(code, {"loud.py": CHATTY})
    produce = pipe.step(
        "produce", "--rows", "5", "--generator", "loud:generator", "--run-id", pipe.run_id
    )
    assert produce.returncode == 0, produce.stderr
    assert produce.stdout == ""
    split = pipe.step(
        "split",
        "--count",
        "5",
        "--rows-per-shard",
        "5",
        "--run-id",
        pipe.run_id,
        "--store",
        pipe.store,
        "--processor",
        "loud:processor",
    )
    assert split.returncode == 0, split.stderr
    assert json.loads(split.stdout) == [{"index": 0, "lo": 1, "hi": 5, "rows": 5}]
    assert "hello from import" in split.stderr and "raw bytes on fd 1" in split.stderr
    shard = pipe.step(
        "shard",
        "--shard",
        "0",
        "--run-id",
        pipe.run_id,
        "--store",
        pipe.store,
        "--processor",
        "loud:processor",
    )
    assert shard.returncode == 0, shard.stderr
    assert shard.stdout == ""
    merge = pipe.step("merge", "--store", pipe.store, "--output", "-")
    assert merge.returncode == 0, merge.stderr
    assert [row["id"] for row in json.loads(merge.stdout)] == [1, 2, 3, 4, 5]
    # Python-level prints are the step's JSON log lines, like logging records.
    lines = [json.loads(x) for x in shard.stderr.splitlines() if x.startswith("{")]
    printed = [x["message"] for x in lines if x["event"] == "stdout"]
    assert printed == ["hello from import", "processing 5", "no newline"]
    assert all(x["step"] == "shard" for x in lines)


def test_a_printing_step_still_shows_help_on_stdout(run_step: RunStep) -> None:
    proc = run_step("split", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m workers.split")


# ------------------------------------------------------------------ provenance across a fix

HELPER_PACKAGE = {
    "enrich/__init__.py": "",
    "enrich/proc.py": """\
        from enrich.helpers import tag

        def processor(batch):
            return [tag(row) for row in batch]
    """,
}
OLD_HELPER = """\
    def tag(row):
        if row["id"] == 45:
            raise ValueError("a bug in the helper")
        return dict(row, by="old")
"""
NEW_HELPER = """\
    def tag(row):
        return dict(row, by="new")
"""


def test_a_fixed_helper_module_never_resumes_or_reuses_the_old_codes_rows(
    pipe: Pipeline, code: Path
) -> None:
    write_code(code, {**HELPER_PACKAGE, "enrich/helpers.py": OLD_HELPER})
    pipe.produce(100)
    items = pipe.split(50)
    opts = ["--processor", "enrich.proc:processor", "--batch-size", "10", "--checkpoint-rows", "10"]
    ok = pipe.shard(items[1], *opts)
    assert ok.returncode == 0, ok.stderr  # keys 51..100: no row 45
    failed = pipe.shard(items[0], *opts)
    assert failed.returncode == 3
    assert "enrich/helpers.py:3" in error_of(failed)["message"]
    write_code(code, {"enrich/helpers.py": NEW_HELPER})  # the user fixes the helper
    retried = pipe.shard(items[0], *opts)
    assert retried.returncode == 0, retried.stderr
    events = [x for x in log_lines(retried) if x["event"] == "checkpoint"]
    assert events == [], "the old helper's checkpoints were resumed"
    assert {row["by"] for row in parts(pipe, 0)} == {"new"}
    # Shard 1 committed with the old helper: merge refuses the mix rather than certify it ...
    mixed = pipe.merge()
    assert mixed.returncode == 4, mixed.stderr
    assert "part-00001 was made by another version of processor" in error_of(mixed)["message"]
    # ... and running shard 1 again recomputes it instead of reusing the old commit.
    again = pipe.shard(items[1], *opts)
    assert "already-committed" not in again.stderr
    assert {row["by"] for row in parts(pipe, 1)} == {"new"}
    assert pipe.merge().returncode == 0


# ------------------------------------------------------------------ parameters checked first

CHECKED = """\
    def processor(batch, extra):
        return batch

    def generator(rows, colour):
        yield {"id": 1}
"""

BAD_PARAMETERS = [
    # -p values, exit code of the check step, words of its error
    (["processor=checked:typo"], 2, "'checked' has no attribute 'typo'"),
    (["processor=nosuchmodule:f"], 2, "cannot import 'nosuchmodule'"),
    (["rows-per-shard=0"], 2, "--rows-per-shard: expected a positive integer"),
    (["rows=100000", "rows-per-shard=10", "max-shards=50"], 2, "--max-shards"),
    (["processor=checked:processor"], 3, "has the wrong signature processor(batch, extra)"),
    (["generator=checked:generator"], 3, "has the wrong signature generator(rows, colour)"),
]


def _workers_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORKERS_DATABASE_URL", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", "workers", "run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _nodes(cwd: Path) -> dict[str, dict[str, Any]]:
    [record] = (cwd / "workers-runs").glob("*/run.json")
    nodes = json.loads(record.read_text())["status"]["nodes"].values()
    return {str(n["displayName"]): n for n in nodes}


@pytest.mark.parametrize(("params", "exit_code", "words"), BAD_PARAMETERS)
def test_the_pipeline_refuses_bad_parameters_before_produce(
    code: Path, params: list[str], exit_code: int, words: str
) -> None:
    write_code(code, {"checked.py": CHECKED})
    args = [a for p in ["rows=100", "rows-per-shard=50", *params] for a in ("-p", p)]
    proc = _workers_run(code, "workers-pipeline", "--sandbox", "remap", *args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    nodes = _nodes(code)
    assert nodes["check"]["phase"] == "Failed"
    assert "produce" not in nodes or nodes["produce"]["phase"] in ("Omitted", "Skipped")
    assert f'"exit_code":{exit_code}' in proc.stdout and words in proc.stdout, proc.stdout


# ------------------------------------------------------------------ resume after a code fix


def test_resume_after_fixing_the_code_recomputes_what_the_old_code_made(code: Path) -> None:
    write_code(code, {**HELPER_PACKAGE, "enrich/helpers.py": OLD_HELPER})
    params = ["rows=200", "rows-per-shard=50", "batch-size=10", "processor=enrich.proc:processor"]
    args = ["workers-pipeline", "--sandbox", "remap", *[a for p in params for a in ("-p", p)]]
    first = _workers_run(code, *args)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "a bug in the helper" in first.stdout
    [run_dir] = (code / "workers-runs").iterdir()
    produced = _nodes(code)["produce"]
    assert produced["phase"] == "Succeeded"

    write_code(code, {"enrich/helpers.py": NEW_HELPER})  # the fix, in the helper module
    again = _workers_run(code, *args, "--resume", str(run_dir))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "rows:          merged 200 == produced 200 in 4 shards" in again.stdout
    # produce and its generation are kept; the steps that check their own reuse ran again
    nodes = _nodes(code)
    assert nodes["produce"]["message"].endswith("(kept)")
    assert nodes["produce"]["outputs"] == produced["outputs"]
    assert (
        "except steps of check, merge, shard, split, split-files, split-table: they run again"
        in again.stderr
    )
    [store] = (run_dir / "volumes" / "workers-shared").iterdir()
    merged = json.loads((store / "merged.json").read_text())
    assert len(merged) == 200 and {row["by"] for row in merged} == {"new"}
    plan = json.loads((store / "plan.json").read_text())
    records = [json.loads(p.read_text()) for p in sorted((store / "commits").glob("*.json"))]
    assert len(records) == 4
    assert all(r["processor"] == plan["processor"] for r in records)
    assert len({r["generation"]["id"] for r in records} | {plan["generation"]["id"]}) == 1


def test_split_again_re_pins_a_fixed_processor_and_says_so(pipe: Pipeline, code: Path) -> None:
    write_code(code, {**HELPER_PACKAGE, "enrich/helpers.py": OLD_HELPER})
    pipe.produce(100)
    opts = ["--processor", "enrich.proc:processor"]
    items = pipe.split(50, *opts)
    assert pipe.shard(items[1], *opts).returncode == 0
    write_code(code, {"enrich/helpers.py": NEW_HELPER})
    refused = pipe.shard(items[0], *opts)
    assert refused.returncode == 2
    assert "run split again to pin the code of now" in error_of(refused)["message"]

    def split_events() -> list[dict[str, Any]]:
        args = ["--count", "100", "--rows-per-shard", "50", "--run-id", pipe.run_id]
        proc = pipe.ok("split", *args, "--store", pipe.store, *opts)
        assert json.loads(proc.stdout) == items
        return [x for x in log_lines(proc) if x["event"] == "re-pinned"]

    [repinned] = split_events()
    assert "another version of processor 'enrich.proc:processor'" in repinned["message"]
    assert split_events() == []  # pinned already: nothing to say twice
    for item in items:
        assert pipe.shard(item, *opts).returncode == 0
    assert pipe.merge().returncode == 0
    merged = json.loads(pipe.read("merged.json"))
    assert len(merged) == 100 and {row["by"] for row in merged} == {"new"}
