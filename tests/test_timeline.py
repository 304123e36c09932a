"""timeline.html, looked at in headless Chromium: what the first screen shows.

Each page is screenshot at 1400x900 (the PNG stays beside the page; WORKERS_TEST_ARTIFACTS=DIR
copies it there too) and its laid-out DOM is dumped with every bar's and section's distance
from the top of the window, so "on the first screen" is measured by the browser, not guessed.
Cases: local runs of the real pipeline (one slow shard; one failed shard), a Workflow JSON
written by hand in Argo's status format as a cluster run leaves it (tests/fixtures/), and
synthetic fan-outs of 200 and 10,000 shards.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from workers import timeline
from workers.runadapter import main as run_main

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
FIXTURE = TESTS / "fixtures" / "cluster-workflow.json"
FIXTURE_STORE = TESTS / "fixtures" / "cluster-store"
MANIFESTS = ROOT / "manifests"
SCREEN_H = 900

# Stamps each bar and section with its top edge as laid out, before --dump-dom serialises.
MEASURE = (
    "<script>for (const el of document.querySelectorAll('[data-node],[id]'))"
    " el.setAttribute('data-top', Math.round(el.getBoundingClientRect().top));</script>"
)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # of the elements inside

    @property
    def top(self) -> int:
        return int(self.attrs["data-top"])

    @property
    def content(self) -> str:
        return "".join(self.text)


class _Collect(HTMLParser):
    """Elements stamped with data-top, each with its text and its descendants' classes."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, Element | None]] = []
        self.found: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for _, open_el in self.stack:
            if open_el is not None and a.get("class"):
                open_el.classes.append(a["class"])
        el = Element(tag, a) if "data-top" in a else None
        if el is not None:
            self.found.append(el)
        if tag not in ("meta", "br", "img", "input", "link"):
            self.stack.append((tag, el))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, el in self.stack:
            if el is not None:
                el.text.append(data)


@dataclass
class Page:
    elements: list[Element]
    png: Path

    def by_id(self, ident: str) -> Element:
        return next(e for e in self.elements if e.attrs.get("id") == ident)

    def rows(self) -> list[Element]:
        return [e for e in self.elements if "data-node" in e.attrs]

    def row(self, label: str) -> Element:
        return next(e for e in self.rows() if e.attrs.get("data-label") == label)


def browse(chromium: str, page: Path, scroll: int = 0) -> Page:
    """Screenshot ``page`` (PNG beside it) and return its laid-out elements, measured after
    scrolling down ``scroll`` pixels."""
    profile = page.parent / "chromium-profile"
    common = [
        chromium,
        "--headless",
        "--no-sandbox",  # root in CI; the page is our own file
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size=1400,{SCREEN_H}",
    ]
    png = page.with_suffix(".png")
    subprocess.run(
        [*common, f"--screenshot={png}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    artifacts = os.environ.get("WORKERS_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(artifacts) / f"{page.parent.name}-{png.name}")
    measured = page.with_name(page.stem + "-measured.html")
    script = MEASURE.replace("<script>", f"<script>window.scrollTo(0, {scroll});")
    measured.write_text(page.read_text().replace("</body>", script + "</body>"))
    dom = subprocess.run(
        [*common, "--dump-dom", measured.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    parser = _Collect()
    parser.feed(dom)
    assert parser.found, "the dumped DOM has no measured elements"
    return Page(parser.found, png)


def on_first_screen(el: Element) -> bool:
    return 0 <= el.top < SCREEN_H - 20


# ---------------------------------------------------------------- local runs


@pytest.mark.parametrize(
    ("processor", "code"),
    [("plugins.userfuncs:skewed", 0), ("plugins.userfuncs:skewed_failing", 1)],
    ids=["slow-shard", "failed-shard"],
)
def test_local_run_shows_the_slowest_shard_and_the_failure_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chromium: str, processor: str, code: int
) -> None:
    monkeypatch.delenv("WORKERS_DATABASE_URL", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the pods import plugins.userfuncs
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    # 10 shards of 100 rows; the one holding row 350 (shard 3) sleeps 4 s, row 750's fails
    params = ["-p", "rows=1000", "-p", "rows-per-shard=100", "-p", f"processor={processor}"]
    assert (
        run_main(["workers-pipeline", "--manifests", str(MANIFESTS), "--runs", str(runs), *params])
        == code
    )
    (run_dir,) = runs.iterdir()
    page = browse(chromium, run_dir / "timeline.html")
    stats = page.by_id("stats")
    assert on_first_screen(stats)
    assert page.by_id("slowest-shard").content.startswith("shard(3) "), stats.content
    row = page.row("shard(3)")
    assert on_first_screen(row)
    # the commit records split the bar: start-up, work, commit
    assert {"seg startup", "seg work", "seg commit"} <= set(row.classes), row.classes
    assert "Pod start-up" in page.by_id("overhead").content
    if code:
        failures = page.by_id("failures")
        assert on_first_screen(failures)
        assert "shard(7)" in failures.content and "Error (exit code 3)" in failures.content
        assert "row 750 is malformed (on purpose)" in failures.content  # the pod's log tail
        failed_row = page.row("shard(7)")
        assert on_first_screen(failed_row) and "Error (exit code 3)" in failed_row.content
    else:
        assert not [e for e in page.elements if e.attrs.get("id") == "failures"]


# ---------------------------------------------------------------- a cluster run


def test_cluster_workflow_renders_with_its_start_up_split(tmp_path: Path, chromium: str) -> None:
    out = tmp_path / "cluster.html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "workers",
            "timeline",
            str(FIXTURE),
            "--store",
            str(FIXTURE_STORE),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    page = browse(chromium, out)
    assert "cluster run" in page.by_id("summary").content
    failures = page.by_id("failures")
    assert on_first_screen(failures)
    assert "shard(9)" in failures.content and "Error (exit code 3)" in failures.content
    stats = page.by_id("stats").content
    # shard 4 lost its spot node and ran twice; shard 7 is the slow one that ran once
    assert "shard(4) 4 m 45 s (2 attempts)" in stats and "shard(7) 3 m 56 s" in stats
    overhead = page.by_id("overhead").content
    assert "Pod start-up" in overhead and "11 of 14 pods split" in overhead
    for label in ("shard(0)", "shard(7)", "shard(10)"):
        row = page.row(label)
        assert on_first_screen(row)
        assert {"seg startup", "seg work", "seg commit", "seg exit"} <= set(row.classes), label
    # items 10 and 11 waited for a parallelism slot (parallelism 10) before their pods existed
    assert "seg wait" in page.row("shard(11)").classes
    gaps = page.by_id("gaps").content
    assert "produce → split" in gaps and "split → shard" in gaps


def test_cluster_workflow_without_its_store_says_so(tmp_path: Path) -> None:
    wf = timeline.load(FIXTURE.read_text(), str(FIXTURE))
    html = timeline.render_workflow(wf)
    assert "commit records not read" in html
    assert "seg startup" not in html and "seg run" in html


# ---------------------------------------------------------------- wide fan-outs


def fan_out(shards: int, slow: int, failed: set[int]) -> dict[str, Any]:
    """The cluster fixture with its loop widened to ``shards`` items (Argo's names and ids)."""
    from argo_local.engine.run import node_id_of

    wf = json.loads(FIXTURE.read_text())
    name = wf["metadata"]["name"]
    nodes: dict[str, Any] = wf["status"]["nodes"]
    group = next(n for n in nodes.values() if n["type"] == "TaskGroup")
    template = next(nodes[c] for c in group["children"] if nodes[c]["phase"] == "Succeeded")
    pod_template = nodes[template["children"][0]]
    for c in group["children"]:
        for sub in nodes[c]["children"][:-1]:
            nodes.pop(sub, None)
        nodes.pop(c)
    group["children"] = []
    for i in range(shards):
        label = json.dumps({"hi": (i + 1) * 100, "index": i, "lo": i * 100 + 1, "rows": 100})
        node_name = f"{name}.shard({i}:{label.replace(' ', '')})"
        seconds = 100 + (i * 7919) % 40 + (300 if i == slow else 0)
        start = 120 + (i // 10) * 3
        item = copy.deepcopy(template)
        item.update(
            id=node_id_of(name, node_name),
            name=node_name,
            displayName=node_name.removeprefix(f"{name}."),
            phase="Failed" if i in failed else "Succeeded",
            startedAt=_ts(start),
            finishedAt=_ts(start + seconds),
        )
        pod = copy.deepcopy(pod_template)
        pod.update(
            id=node_id_of(name, node_name + "(0)"),
            name=node_name + "(0)",
            displayName=item["displayName"] + "(0)",
            phase=item["phase"],
            startedAt=item["startedAt"],
            finishedAt=item["finishedAt"],
        )
        if i in failed:
            pod["message"] = f"Error (exit code 3) in shard {i}"
        item["children"] = [pod["id"]]
        nodes[item["id"]] = item
        nodes[pod["id"]] = pod
        group["children"].append(item["id"])
    return dict(wf)


def _ts(seconds: int) -> str:
    return f"2025-03-02T{10 + seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}Z"


@pytest.mark.parametrize("shards", [200, pytest.param(10_000, marks=pytest.mark.slow)])
def test_a_wide_fan_out_collapses_to_a_histogram_and_the_slowest(
    tmp_path: Path, chromium: str, shards: int
) -> None:
    wf = fan_out(shards, slow=137, failed={5, shards - 1})
    tracemalloc.start()
    html = timeline.render_workflow(wf)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2048 * shards + (16 << 20), f"{peak / 1e6:.0f} MB to render {shards} shards"
    assert len(html) < 200_000  # a page of rows for the slowest and failed, not one per shard
    page_file = tmp_path / f"fan-out-{shards}.html"
    page_file.write_text(html)
    page = browse(chromium, page_file)
    rows = page.rows()
    assert len(rows) < 40, len(rows)
    stats = page.by_id("stats").content
    assert f"shard{shards}" in stats.replace(" ", "").replace("\n", "")
    assert page.by_id("slowest-shard").content.startswith("shard(137) ")
    assert on_first_screen(page.row("shard(137)"))
    failures = page.by_id("failures")
    assert on_first_screen(failures)
    assert f"Error (exit code 3) in shard {shards - 1}" in failures.content
    assert "time per item" in html and html.count("<rect") >= 10  # the histogram's bars


def test_the_time_axis_stays_visible_while_scrolling(tmp_path: Path, chromium: str) -> None:
    page_file = tmp_path / "forty.html"
    page_file.write_text(timeline.render_workflow(fan_out(40, slow=3, failed=set())))
    top = browse(chromium, page_file)
    assert len(top.rows()) >= 40  # 40 items are shown one by one, the page is taller than 900
    first = top.row("shard(0)").top
    scrolled = browse(chromium, page_file, scroll=2000)  # to the bottom
    moved = first - scrolled.row("shard(0)").top
    axis = top.by_id("axis").top
    assert moved > axis > 0  # the page scrolled past where the axis was laid out
    assert scrolled.by_id("axis").top == 0  # and the axis stayed at the top of the window


# ---------------------------------------------------------------- the command and its parts


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"kind": "Workflow", "status": {}}', "not an Argo Workflow with status.nodes"),
        ('{"kind": "List", "items": []}', "not an Argo Workflow with status.nodes"),
        (None, "cannot read"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "wf.json"
    if content is not None:
        path.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "workers", "timeline", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "timeline.html").exists()


def test_stdin_to_stdout_and_a_one_item_list(tmp_path: Path) -> None:
    wf = json.loads(FIXTURE.read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "workers", "timeline", "-"],
        input=json.dumps({"kind": "List", "items": [wf]}),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=True,
    )
    assert proc.stdout.startswith("<!doctype html>") and "workers-pipeline-7xk2p" in proc.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-02T10:00:00Z", 1740909600.0),
        ("2025-03-02T10:00:00.250Z", 1740909600.25),
        ("2025-03-02T11:00:00+01:00", 1740909600.0),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_parse_time(text: str | None, expected: float | None) -> None:
    assert timeline.parse_time(text) == expected


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ('wf.shard(7:{"index":7,"lo":1})', "wf.shard(7)"),
        ("wf[1].each(12:12)", "wf[1].each(12)"),
        ("wf.merge", "wf.merge"),
        ("wf.split(0)", "wf.split(0)"),  # an attempt, not a loop item
    ],
)
def test_short_name(name: str, short: str) -> None:
    assert timeline.short_name(name) == short


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1.0], 50, 1.0), ([1.0, 3.0], 50, 2.0), ([1.0, 2.0, 3.0, 4.0, 5.0], 95, 4.8), ([], 50, 0.0)],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert timeline.percentile(values, q) == pytest.approx(expected)


def test_node_ids_are_argos() -> None:
    """Argo's own test data (workflow/controller/testdata/steps-failed-retries.yaml and the
    parameter-aggregation DAG of operator_test.go) name these nodes so."""
    from argo_local.engine.run import node_id_of

    assert node_id_of("failed-retries-tjjsc", "failed-retries-tjjsc") == "failed-retries-tjjsc"
    assert (
        node_id_of("failed-retries-tjjsc", "failed-retries-tjjsc[0].fail")
        == "failed-retries-tjjsc-20069324"
    )
    assert (
        node_id_of("failed-retries-tjjsc", "failed-retries-tjjsc[0].fail(1)")
        == "failed-retries-tjjsc-759866442"
    )
    assert (
        node_id_of(
            "parameter-aggregation-dag-h8b82", "parameter-aggregation-dag-h8b82.odd-or-even(0:1)"
        )
        == "parameter-aggregation-dag-h8b82-3572919299"
    )


def test_docs_and_help_examples_are_true(jq: str) -> None:
    """Every ``python -m workers timeline`` line of the sizing how-to and of --help parses, and
    the page's jq line lists the pods of a cluster Workflow."""
    import shlex

    readme = (ROOT / "docs" / "how-to" / "sizing.md").read_text()
    lines = [
        line.split("#")[0].strip().rstrip("\\").strip()
        for text in (readme, timeline.EPILOG)
        for line in text.splitlines()
        if "python -m workers timeline " in line
    ]
    lines = [line[line.index("python -m workers timeline") :] for line in lines]
    assert len(lines) >= 5
    for line in lines:
        timeline.build_parser().parse_args(shlex.split(line)[4:])
    jq_line = next(line for line in readme.splitlines() if line.startswith("jq "))
    argv = [jq, *shlex.split(jq_line)[1:-1], str(FIXTURE)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    pods = [row.split("\t") for row in out.splitlines()]
    # produce, split and 12 shards, one of which ran twice
    assert len(pods) == 15 and ["split(0)", "Succeeded", "2025-03-02T10:01:14Z"] in pods
