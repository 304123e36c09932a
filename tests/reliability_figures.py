"""The reliability suite's figures: counted from its own tables, or recorded by the run.

Two kinds of figures reach the docs' Reliability block (docs/reliability.md, between ``<!-- reliability:begin -->``
and ``<!-- reliability:end -->``), and both are generated, never typed:

* table figures (kill attempts per run, bad-input cases, hypothesis examples, hostile names,
  failing invocations) are counted from the test modules' tables: :func:`table_figures`;
* run figures (kills that landed before the commit, those after it) exist only after a run:
  the kill tests :func:`record` them,
  and this plugin writes them to ``reliability-figures.json`` in pytest's session folder and
  prints them in the terminal summary. ``bin/readme-figures --reliability that.json`` copies
  them to ``tests/reliability-run.json`` (the reference run, with its seed and date) and
  rewrites the docs block from both; ``test_reliability_readme.py`` checks the block.

Loaded by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
REFERENCE_RUN = TESTS / "reliability-run.json"
FILE_NAME = "reliability-figures.json"

_RUN: dict[str, Any] = {"kills": {}}


def record(backend: str, seed: int, figures: collections.Counter[str]) -> None:
    """Keep one kill campaign's counters for the session's figures file."""
    _RUN["seed"] = seed
    _RUN["kills"][backend] = dict(sorted(figures.items()))


def table_figures() -> dict[str, Any]:
    """Figures defined by the suite's tables: what one full run attempts, counted, not run."""
    import hypothesis
    import test_reliability_input as inputs
    import test_reliability_kills as kills
    import test_reliability_security as security

    def examples(module: Any) -> tuple[int, int]:
        fuzz = [
            f
            for name, f in vars(module).items()
            if name.startswith("test_") and hypothesis.is_hypothesis_test(f)
        ]
        return len(fuzz), len(fuzz) * module.FUZZ.max_examples

    shards = kills.ROWS // kills.PER_SHARD
    fuzz_input, fuzz_redaction = examples(inputs), examples(security)
    return {
        "kill_backends": list(kills.BACKENDS),
        "kill_attempts_per_backend": kills.ROUNDS * shards,
        "kill_attempts": kills.ROUNDS * shards * len(kills.BACKENDS),
        "kill_rounds": kills.ROUNDS,
        "kill_shards": shards,
        "teeth_phases": [phase for phase, _check, _refusal in kills.TEETH],
        "bad_inputs": len(inputs.BAD_INPUTS),
        "fuzz_input_tests": fuzz_input[0],
        "fuzz_input_examples": fuzz_input[1],
        "fuzz_redaction_tests": fuzz_redaction[0],
        "fuzz_redaction_examples": fuzz_redaction[1],
        "hostile_names": len(security.HOSTILE_NAMES),
        "bad_urls": len(security.FAILING_URLS),
        "failing_steps": len(security.FAILING_STEPS),
        "failing_invocations": len(security.FAILING_URLS)
        * len(security.FAILING_STEPS)
        * len(security.DEBUG_MODES),
        "redaction_rows": len(security.REDACTION_TABLE),
    }


def render(table: dict[str, Any], run: dict[str, Any]) -> str:
    """The docs' Reliability table from the table figures and a reference run's figures."""
    kills = run.get("kills") or {}
    before = sum(k.get("kills-before-commit", 0) for k in kills.values())
    after = sum(k.get("kills-after-commit", 0) for k in kills.values())
    finished = sum(k.get("finished-before-kill", 0) for k in kills.values())
    ran = ", ".join(kills) or "none"
    if kills:
        per = "; ".join(f"{b} {k.get('kills-before-commit', 0)}" for b, k in kills.items())
        reference = (
            f"in the reference run (seed {run.get('seed')}, {run.get('date')}; backends run: "
            f"{ran}) {before} of {before + after + finished} attempts were killed before their "
            f"commit ({per}); {after} landed after it (the shard had committed: not counted) "
            f"and {finished} finished first"
        )
    else:
        reference = "no reference run recorded yet"
    rows = [
        (
            "killed shards (SIGKILL)",
            f"{table['kill_attempts']} kill attempts per run, {table['kill_attempts_per_backend']} "
            f"per backend ({', '.join(table['kill_backends'])}; {table['kill_shards']} shards x "
            f"{table['kill_rounds']} rounds), aimed before the commit at each phase of the commit "
            "protocol (read, data spooled, data published without record, record being "
            "published); "
            f"{reference}. Delays come from `random.Random(seed)`: `WORKERS_RELIABILITY_SEED` "
            "replays a run",
        ),
        (
            "after every round",
            "each commit record verifies the bytes at its part's name; nothing but final names "
            "(and, locally, hidden temp files) in the store; merge exits 0 with exactly the "
            "produced rows or 4 with no output",
        ),
        (
            "after the retries",
            "**rows lost: 0, duplicates: 0**, merged rows == produced rows, no partial or temp "
            "file consumed, no S3 multipart upload left",
        ),
        (
            "zombie + retry at once",
            "local, S3, GCS: both attempts exit 0 and the committed part is byte-identical to a "
            "clean run",
        ),
        (
            "teeth",
            f"a writer broken on purpose (`WORKERS_TEST_BREAK=direct-write`) is killed at an "
            f"announced phase ({', '.join(table['teeth_phases'])}; `WORKERS_TEST_HOLD`, no "
            "timing): the named store check fires and merge exits 4 naming the part, while the "
            "real writer killed at the same point passes every check",
        ),
        (
            "database cut / stalled",
            "produce and shard (COPY and cursor paths), RST or stall: exit 75 within "
            "`WORKERS_TIMEOUT` (+5 s grace), previous rows intact, no part; a port that never "
            "answers fails within `WORKERS_CONNECT_TIMEOUT`",
        ),
        (
            "storage dies mid-write",
            "S3 and GCS server gone mid-upload, local disk full (ENOSPC on a tmpfs): exit 75, "
            "nothing at the final name",
        ),
        (
            "merge",
            "byte-identical twice, and refuses 5 kinds of damage on S3 and GCS naming the "
            "shard, writing nothing",
        ),
        (
            "bad input",
            f"{table['bad_inputs']} cases (shard items, count files, plugins, part files, "
            "formats): one line, the documented code, no output; plus up to "
            f"{table['fuzz_input_examples']} hypothesis examples over {table['fuzz_input_tests']} "
            "properties of `parse_item`, `parse_count` and `to_json_lines` (checked against "
            "`json`)",
        ),
        (
            "security",
            f"{table['hostile_names']} hostile table/column names x every flag on PostgreSQL "
            "and SQLite (no table dropped or created), run ids and plans that could escape the "
            "store, a canary password through a full run and "
            f"{table['failing_invocations']} failing invocations ({table['bad_urls']} bad URLs "
            f"x {table['failing_steps']} steps x debug on/off) and a connection cut (never "
            "printed, also with `WORKERS_DEBUG=1`), the runner's `run.json`, `timeline.html` "
            "and output with a secret and a 300,000-character token, the redaction rule as a "
            f"{table['redaction_rows']}-row table plus up to "
            f"{table['fuzz_redaction_examples']} hypothesis examples, the restricted Pod "
            "Security Standard as a rule table over `kubectl kustomize manifests/`",
        ),
    ]
    lines = ["| area | figures |", "|---|---|"]
    lines += [f"| {area} | {text} |" for area, text in rows]
    return "\n".join(lines)


def reference_run() -> dict[str, Any]:
    return json.loads(REFERENCE_RUN.read_text()) if REFERENCE_RUN.exists() else {}


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _RUN["kills"]:
        return
    run = {**_RUN, "date": time.strftime("%Y-%m-%d", time.gmtime())}
    figures = {"run": run, "table": table_figures()}
    folder = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    path = Path(folder) / FILE_NAME
    path.write_text(json.dumps(figures, indent=2) + "\n")
    terminalreporter.section("reliability figures")
    for backend, counts in run["kills"].items():
        terminalreporter.write_line(f"seed {run['seed']} backend {backend}: {counts}")
    before = sum(c.get("kills-before-commit", 0) for c in run["kills"].values())
    after = sum(c.get("kills-after-commit", 0) for c in run["kills"].values())
    terminalreporter.write_line(
        f"kills before the commit: {before} (after it, not counted: {after}); "
        f"figures written to {path}"
    )
    terminalreporter.write_line(f"docs/reliability.md: bin/readme-figures --reliability {path}")
