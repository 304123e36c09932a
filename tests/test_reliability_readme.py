"""The docs' figures are what the suite and the benchmark render, not numbers typed by hand.

The Reliability block is in docs/reliability.md, the Performance block in docs/performance.md
(bin/readme-figures renders both).

Cheap (no processes): left outside the ``reliability`` marker so every suite run checks it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import reliability_figures as figures

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bin"), str(ROOT / "benchmarks")]

import readme_figures  # noqa: E402  (bin/readme_figures.py)


def _block(name: str) -> str:
    text = readme_figures.PAGES[name].read_text()
    m = re.search(rf"<!-- {name}:begin -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    assert m, f"{readme_figures.PAGES[name]} lacks the {name} markers"
    return m.group(1)


def test_reliability_block_is_what_the_tables_and_the_reference_run_render() -> None:
    run = figures.reference_run()
    assert _block("reliability") == figures.render(figures.table_figures(), run)


def test_reliability_block_names_its_reference_run() -> None:
    run = figures.reference_run()
    block = _block("reliability")
    if run.get("kills"):
        assert f"seed {run['seed']}, {run['date']}" in block
        assert all(b in block for b in run["kills"])
    else:
        assert "no reference run recorded yet" in block


def test_reference_run_accounts_for_every_attempt() -> None:
    """Each backend's attempts are kills before the commit, kills after it, or finished first:
    no other kind of count reaches the README."""
    table = figures.table_figures()
    run = figures.reference_run()
    assert run.get("kills"), "no reference run recorded"
    for backend, counts in run["kills"].items():
        split = [counts.get(k, 0) for k in ("kills-before-commit", "kills-after-commit")]
        assert (
            sum(split) + counts.get("finished-before-kill", 0)
            == (table["kill_attempts_per_backend"])
        ), (backend, counts)
        assert "kills" not in counts, "a total that mixes kills before and after the commit"


def test_block_counts_only_kills_before_the_commit() -> None:
    table = figures.table_figures()
    run = {
        "seed": 7,
        "date": "2026-12-07",
        "kills": {
            "local": {
                "kills-before-commit": 30,
                "kills-after-commit": 4,
                "finished-before-kill": 2,
            },
            "s3": {"kills-before-commit": 25, "kills-after-commit": 1, "finished-before-kill": 10},
        },
    }
    block = figures.render(table, run)
    assert "55 of 72 attempts were killed before their commit (local 30; s3 25)" in block
    assert "5 landed after it (the shard had committed: not counted) and 12 finished first" in block


def test_table_figures_count_the_suite_as_collected() -> None:
    """The counts are the tables' sizes: the kill test's parameters, BAD_INPUTS' rows..."""
    import test_reliability_input as inputs
    import test_reliability_kills as kills

    table = figures.table_figures()
    assert table["kill_attempts"] == table["kill_attempts_per_backend"] * 4 == 144
    assert table["bad_inputs"] == len(inputs.BAD_INPUTS)
    marks = kills.test_sigkill_at_random_points_never_loses_or_duplicates_rows.pytestmark
    (backends,) = [m.args[1] for m in marks if m.name == "parametrize"]
    assert list(backends) == table["kill_backends"]


def test_performance_block_is_what_results_json_renders() -> None:
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    assert _block("performance") == readme_figures.performance_block(results)


def test_profile_notes_quote_the_measured_ratios() -> None:
    """The prose under the table names ratios ("**shard, 3.5x ...**"): each is a rounding of a
    ratio in results.json, so a new benchmark run with other figures fails here."""
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    text = readme_figures.PAGES["performance"].read_text()
    notes = text[text.index("<!-- performance:end -->") :]
    quoted = re.findall(r"\*\*[a-z -]+, (\d+(?:\.\d+)?)x", notes)
    assert quoted, "no ratio found in the profile notes"
    ratios = [r["ratio"] for r in results["rows"] if r["ratio"] is not None]
    for q in quoted:
        digits = len(q.partition(".")[2])
        assert any(f"{r:.{digits}f}" == q for r in ratios), (q, ratios)


def test_columnar_block_is_what_results_columnar_json_renders() -> None:
    results = json.loads(readme_figures.COLUMNAR_RESULTS.read_text())
    assert _block("performance-columnar") == readme_figures.columnar_block(results)
    assert {r["step"] for r in results["rows"]} >= {"columnar", "part bytes"}


def test_only_a_columnar_runs_json_is_adopted(tmp_path: Path) -> None:
    """--columnar FILE takes the JSON of a columnar-only run, and refuses a whole run's (its
    other rows would be shown under the columnar heading) or a file that is not a run's."""
    whole = ROOT / "benchmarks" / "results.json"
    dest = tmp_path / "results-columnar.json"
    readme_figures.adopt_columnar(readme_figures.COLUMNAR_RESULTS, dest)
    assert json.loads(dest.read_text()) == json.loads(readme_figures.COLUMNAR_RESULTS.read_text())
    for bad, words in ((whole, "not a columnar-only run"), (tmp_path / "nope.json", "not a")):
        with pytest.raises(SystemExit, match=words):
            readme_figures.adopt_columnar(bad, tmp_path / "other.json")
    assert not (tmp_path / "other.json").exists()
