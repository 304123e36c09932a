"""Dashboards, alerts, metrics and logs a platform can use (README "Dashboards and alerts", "Logs").

* The PrometheusRule passes ``promtool check rules``, and ``promtool test rules`` fires every
  alert on synthetic series (tests/observability/alerts_test.yaml).
* Every metric the dashboard or a rule queries is one the templates export under Argo's name
  (``argo_workflows_`` + the template's metric name, ``_bucket``/``_sum``/``_count`` for a
  histogram), every exported metric is charted, and the README lists each one.
* ``workers run`` computes the templates' metrics into ``metrics.prom`` under the same names.
* Every stderr line of a step is JSON with the workflow, node and pod, including the records of
  a generator's or processor's own ``logging`` calls, with secrets masked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import unavailable

from argo_local.engine.metrics import PREFIX, MetricError, Registry, node_scope
from argo_local.expr import exprlang
from argo_local.expr.depends import ExprError

try:  # tests/ may or may not become a package on other branches
    from tests import manifest_checks as mc
except ImportError:
    import manifest_checks as mc  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
OBSERVABILITY = REPO / "manifests" / "observability"
ALERT_TESTS = Path(__file__).resolve().parent / "observability" / "alerts_test.yaml"
SERIES = re.compile(r"\bargo_workflows_[A-Za-z0-9_]+")

# ------------------------------------------------------------------ what the templates export


def template_metrics() -> dict[str, dict[str, Any]]:
    """Metric name -> its first definition, over every template of the library."""
    found: dict[str, dict[str, Any]] = {}
    for doc in (d for f in mc.base_files() for d in mc.load(f)):
        if doc["kind"] != "WorkflowTemplate":
            continue
        for tmpl in mc.workflow_spec(doc).get("templates") or []:
            for m in (tmpl.get("metrics") or {}).get("prometheus") or []:
                found.setdefault(m["name"], m)
    return found


def exported_series() -> dict[str, str]:
    """Series name as Prometheus scrapes it from Argo's controller -> the template's metric.

    Argo (3.4 to 4.x) prefixes custom metrics with ``argo_workflows_`` and adds no ``_total``
    or unit suffix; a histogram is scraped as ``_bucket``, ``_sum`` and ``_count``.
    """
    out: dict[str, str] = {}
    for name, m in template_metrics().items():
        full = PREFIX + name
        if "histogram" in m:
            for suffix in ("_bucket", "_sum", "_count"):
                out[full + suffix] = name
        else:
            out[full] = name
    return out


def rule_spec() -> dict[str, Any]:
    doc = yaml.safe_load((OBSERVABILITY / "prometheusrule.yaml").read_text())
    assert doc["kind"] == "PrometheusRule"
    return dict(doc["spec"])


def rules() -> list[dict[str, Any]]:
    return [r for g in rule_spec()["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    return dict(json.loads((OBSERVABILITY / "dashboard.json").read_text()))


def panel_queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p["targets"]]


def docs_page(name: str) -> str:
    import docs_pages

    return docs_pages.page(name)


# ------------------------------------------------------------------ rules and promtool


def test_rules_pass_promtool_check(tmp_path: Path, promtool: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule_spec()))
    out = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


def test_every_alert_fires_in_the_promtool_unit_tests(tmp_path: Path, promtool: str) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_spec()))
    shutil.copy(ALERT_TESTS, tmp_path / "alerts_test.yaml")
    out = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # Each alert has a case where it fires (a non-empty exp_alerts), not only silent ones.
    cases = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    firing = {
        c["alertname"] for t in cases for c in t.get("alert_rule_test") or [] if c["exp_alerts"]
    }
    assert firing == {r["alert"] for r in rules()}


def test_a_broken_alert_fails_its_unit_test(tmp_path: Path, promtool: str) -> None:
    """The unit tests can fail: raise a threshold so the alert no longer fires."""
    spec = rule_spec()
    for g in spec["groups"]:
        for r in g["rules"]:
            if r["alert"] == "WorkersShardsStartupDominated":
                r["expr"] = r["expr"].replace("> 1\n", "> 3\n")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(ALERT_TESTS, tmp_path / "alerts_test.yaml")
    out = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert "WorkersShardsStartupDominated" in out.stdout + out.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path, promtool: str) -> None:
    # promtool parses PromQL in rule files: one recording rule per panel query, with Grafana's
    # $__rate_interval replaced by a real range.
    records = [
        {"record": f"workers:panel_{i}", "expr": q.replace("$__rate_interval", "5m")}
        for i, (_, q) in enumerate(panel_queries())
    ]
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": records}]}))
    out = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------ names agree everywhere


def test_queries_name_only_exported_series() -> None:
    exported = exported_series()
    queries = panel_queries() + [(r["alert"], r["expr"]) for r in rules()]
    for where, query in queries:
        names = SERIES.findall(query)
        assert names, f"{where}: queries no argo_workflows_ series: {query}"
        unknown = sorted(set(names) - set(exported))
        assert unknown == [], f"{where}: {unknown} not exported by any template"


def test_every_exported_metric_is_charted_and_documented() -> None:
    charted = {exported_series()[n] for _, q in panel_queries() for n in SERIES.findall(q)}
    metrics = set(template_metrics())
    assert metrics - charted == set(), "exported but on no dashboard panel"
    section = docs_page("reference/metrics.md")
    assert [m for m in sorted(metrics) if f"`{PREFIX}{m}" not in section] == []
    assert [r["alert"] for r in rules() if f"`{r['alert']}`" not in section] == []


def test_a_metric_reading_an_output_without_default_is_reported() -> None:
    docs = [d for f in mc.base_files() for d in mc.load(f) if d["kind"] == "WorkflowTemplate"]
    assert mc.metric_problems(docs) == []
    shard = next(d for d in docs if d["metadata"]["name"] == "workers-shard")
    del shard["spec"]["templates"][0]["outputs"]["parameters"][0]["valueFrom"]["default"]
    assert mc.metric_problems(docs) == [
        "WorkflowTemplate/workers-shard: shard: metric workers_shard_startup_overhead_seconds "
        "reads output seconds, which has no valueFrom.default for attempts that fail",
        "WorkflowTemplate/workers-shard: shard: metric workers_shard_work_seconds "
        "reads output seconds, which has no valueFrom.default for attempts that fail",
    ]


def test_dashboard_panels_use_the_datasource_variable() -> None:
    dash = dashboard()
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
    ids = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "two panels at one place"


def test_kustomization_renders_the_rule_and_the_dashboard_configmap() -> None:
    if mc.kustomize_command() is None:
        unavailable(mc.NO_KUSTOMIZE)
    docs = mc.render(OBSERVABILITY)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "PrometheusRule"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["workers.json"]) == dashboard()


# ------------------------------------------------------------------ local metrics (workers run)

METRIC_CASES = [
    # (metric, node scope, expected exposition lines, or a MetricError message fragment)
    (
        {
            "name": "overhead",
            "help": "h",
            "histogram": {
                "value": "{{=asFloat(duration) - asFloat(outputs.parameters.seconds)}}",
                "buckets": [1, 5],
            },
        },
        {"duration": "4.5", "outputs.parameters.seconds": "1.25", "status": "Succeeded"},
        [
            'argo_workflows_overhead_bucket{le="1"} 0',
            'argo_workflows_overhead_bucket{le="5"} 1',
            'argo_workflows_overhead_bucket{le="+Inf"} 1',
            "argo_workflows_overhead_sum 3.25",
            "argo_workflows_overhead_count 1",
        ],
    ),
    (
        {
            "name": "rows_total",
            "help": "h",
            "when": "{{status}} == Succeeded && {{outputs.parameters.rows}} > 0",
            "counter": {"value": "{{outputs.parameters.rows}}"},
        },
        {"status": "Succeeded", "outputs.parameters.rows": "0"},
        [],  # when is false: nothing recorded, not even the family
    ),
    (
        {
            "name": "failures_total",
            "help": "h",
            "labels": [{"key": "step", "value": 'a"b\\c'}],
            "counter": {"value": "1"},
        },
        {"status": "Failed"},
        ['argo_workflows_failures_total{step="a\\"b\\\\c"} 1'],
    ),
    (
        {"name": "g", "help": "h", "gauge": {"value": "{{outputs.parameters.missing}}"}},
        {"status": "Failed"},
        "failed to resolve {{outputs.parameters.missing}}",
    ),
    (
        # Argo resolves the value before `when`: a false `when` does not hide a missing output.
        {
            "name": "c_total",
            "help": "h",
            "when": "{{status}} == Succeeded",
            "counter": {"value": "{{outputs.parameters.count}}"},
        },
        {"status": "Failed"},
        "failed to resolve {{outputs.parameters.count}}",
    ),
    (
        {"name": "bad-name", "help": "h", "gauge": {"value": "1"}},
        {},
        "not a valid metric name",
    ),
    (
        {"name": "g", "help": "h", "gauge": {"value": "{{outputs.result}}"}},
        {"outputs.result": "many"},
        "is not a number",
    ),
]


@pytest.mark.parametrize(("metric", "scope", "expected"), METRIC_CASES)
def test_runner_metric_values(
    metric: dict[str, Any], scope: dict[str, str], expected: list[str] | str
) -> None:
    reg = Registry()
    if isinstance(expected, str):
        with pytest.raises(MetricError, match=re.escape(expected)):
            reg.emit(metric, scope, "t")
        return
    reg.emit(metric, scope, "t")
    lines = [ln for ln in reg.exposition().splitlines() if not ln.startswith("#")]
    assert lines == expected


def test_runner_metric_keeps_one_descriptor_per_name() -> None:
    reg = Registry()
    reg.emit({"name": "d", "help": "h", "counter": {"value": "1"}}, {}, "t")
    with pytest.raises(MetricError, match="first definition"):
        reg.emit({"name": "d", "help": "other", "counter": {"value": "1"}}, {}, "t")


def test_node_scope_offers_argos_metric_variables() -> None:
    scope = node_scope(
        {"workflow.name": "w"},
        status="Failed",
        duration=2.5,
        exit_code="75",
        retries=1,
        outputs={"parameters": {"seconds": "0"}, "result": ""},
    )
    assert scope == {
        "workflow.name": "w",
        "status": "Failed",
        "duration": "2.500000",
        "retries": "1",
        "exitCode": "75",
        "outputs.result": "",
        "outputs.parameters.seconds": "0",
    }


ARITHMETIC_CASES = [
    ("1 + 2 * 3", {}, 7),
    ("(1 + 2) * 3", {}, 9),
    ("10 / 4 - 1", {}, 1.5),
    (
        "asFloat(duration) - asFloat(outputs.parameters.seconds)",
        {"duration": "3", "outputs.parameters.seconds": "0.5"},
        2.5,
    ),
    (
        # expr-lang reads `key-column` as a subtraction: a hyphenated name needs brackets
        "inputs.parameters['key-column']",
        {"inputs.parameters.key-column": "k"},
        "k",
    ),
    ("2 > 1 + 3", {}, False),
]


@pytest.mark.parametrize(("text", "names", "value"), ARITHMETIC_CASES)
def test_expression_arithmetic(text: str, names: dict[str, Any], value: Any) -> None:
    """A metric's ``{{=...}}`` is expr-lang (util/template/expression_template.go)."""
    assert exprlang.evaluate(text, exprlang.environment(names)) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("'a' - 1", "invalid operation: string - int"),
        ("inputs.parameters.key-column", "unknown name column"),
    ],
)
def test_expression_arithmetic_errors(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        exprlang.evaluate(text, exprlang.environment({"inputs.parameters.key-column": "k"}))


# ------------------------------------------------------------------ logs

PLATFORM = {
    "WORKERS_WORKFLOW_NAME": "wf-abc12",
    "WORKERS_NODE_NAME": "wf-abc12.plan.produce",
    "WORKERS_POD_NAME": "wf-abc12-produce-1234567",
    "ARGO_NODE_ID": "wf-abc12-1234567",
}
FIELDS = {
    "workflow": "wf-abc12",
    "node": "wf-abc12.plan.produce",
    "pod": "wf-abc12-produce-1234567",
}


def json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = stderr.splitlines()
    assert lines, "no log lines"
    records = []
    for line in lines:
        rec = json.loads(line)  # a plain-text line fails here
        assert isinstance(rec, dict), line
        records.append(rec)
    return records


def test_user_logging_comes_out_as_json_lines_with_the_platform_fields(
    run_step: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    env = {
        **PLATFORM,
        "WORKERS_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "PYTHONPATH": str(REPO / "tests"),
        "CHATTY_URL": "postgresql://app:s3cret-pass-9@db.internal:5432/app",
    }
    out = run_step(
        "produce",
        "--rows",
        "3",
        "--run-id",
        "r1",
        "--generator",
        "plugins.chatty:generator",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    records = json_lines(out.stderr)
    for rec in records:
        assert {k: rec.get(k) for k in FIELDS} == FIELDS, rec
        assert rec["node_id"] == PLATFORM["ARGO_NODE_ID"]
        assert rec["step"] == "produce" and rec["run_id"] == "r1"
    user = [r for r in records if r["event"] == "log"]
    assert [(r["level"], r["logger"]) for r in user] == [
        ("warning", "plugins.chatty"),
        ("error", "plugins.chatty"),
        ("warning", "py.warnings"),
        ("error", "plugins.chatty"),
    ]
    assert user[0]["message"] == "generating 3 rows"
    # The user's message with a URL: its password is masked like in the steps' own lines.
    assert user[1]["message"] == "connecting to postgresql://app:***@db.internal:5432/app"
    assert "s3cret-pass-9" not in out.stderr
    assert "an old option" in user[2]["message"]
    assert user[3]["message"] == "recovered"
    # One line, like the steps' own errors; the traceback only with WORKERS_DEBUG=1.
    assert user[3]["exception"] == "ValueError: caught and logged"
    assert "Traceback" not in out.stderr
    debug = run_step(
        "produce",
        "--rows",
        "3",
        "--run-id",
        "r2",
        "--generator",
        "plugins.chatty:generator",
        env={**env, "WORKERS_DEBUG": "1"},
    )
    (rec,) = [r for r in json_lines(debug.stderr) if r.get("message") == "recovered"]
    assert rec["traceback"].startswith("Traceback (most recent call last)")
    assert 'raise ValueError("caught and logged")' in rec["traceback"]
    # The drivers' records come out only with WORKERS_DEBUG: the step's failed line says it.
    assert "driver noise" not in out.stderr
    (noise,) = [r for r in json_lines(debug.stderr) if r.get("message") == "driver noise"]
    assert noise["logger"] == "urllib3.connectionpool" and noise["pod"] == FIELDS["pod"]


def test_log_fields_are_absent_outside_a_pod(
    run_step: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    out = run_step("produce", "--rows", "2", "--run-id", "r1", env=env)
    assert out.returncode == 0, out.stderr
    for rec in json_lines(out.stderr):
        assert not set(rec) & {"workflow", "node", "node_id", "pod"}, rec


def test_a_failing_step_still_logs_json_with_the_fields(
    run_step: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    out = run_step("produce", "--rows", "-1", env=PLATFORM)
    assert out.returncode == 2
    (rec,) = json_lines(out.stderr)
    assert rec["event"] == "failed" and {k: rec[k] for k in FIELDS} == FIELDS


# ------------------------------------------------------------------ shard's own stats


def test_shard_stats_dir_holds_this_attempts_work(
    run_step: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    store = str(tmp_path / "store")
    assert run_step("produce", "--rows", "500", "--run-id", "r", env=env).returncode == 0
    assert (
        run_step("split", "--count", "500", "--run-id", "r", "--store", store, env=env).returncode
        == 0
    )
    item = '{"index":0,"lo":1,"hi":500,"rows":500}'
    args = ["--shard", item, "--run-id", "r", "--store", store, "--stats-dir"]

    first = run_step("shard", *args, str(tmp_path / "s1"), env=env)
    assert first.returncode == 0, first.stderr
    stats = {p.name: p.read_text() for p in (tmp_path / "s1").iterdir()}
    assert set(stats) == {"seconds", "rows", "rows-per-second"}
    assert stats["rows"] == "500\n" and float(stats["seconds"]) > 0
    assert float(stats["rows-per-second"]) == pytest.approx(500 / float(stats["seconds"]), rel=0.01)

    # A retry that finds the part committed did no work of its own.
    again = run_step("shard", *args, str(tmp_path / "s2"), env=env)
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_text() for p in (tmp_path / "s2").iterdir()} == {
        "seconds": "0.0000\n",
        "rows": "0\n",
        "rows-per-second": "0\n",
    }


@pytest.mark.parametrize(
    ("stats_dir", "message"),
    [("s3://bucket/stats", "must be a local folder"), ("@FILE", "is not a folder")],
)
def test_shard_refuses_a_stats_dir_it_cannot_write(
    run_step: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
    stats_dir: str,
    message: str,
) -> None:
    if stats_dir == "@FILE":
        stats_dir = str(tmp_path / "a-file")
        Path(stats_dir).write_text("x")
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    item = '{"index":0,"lo":1,"hi":5,"rows":5}'
    out = run_step("shard", "--shard", item, "--run-id", "r", "--stats-dir", stats_dir, env=env)
    assert out.returncode == 2
    assert message in json_lines(out.stderr)[-1]["message"]


# ------------------------------------------------------------------ a local pipeline run


@pytest.mark.slow
def test_local_run_pods_log_their_names_and_record_the_metrics(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    promtool: str,
) -> None:
    from workers.runadapter import main

    monkeypatch.delenv("WORKERS_DATABASE_URL", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    code = main(
        [
            "workers-pipeline",
            "--runs",
            str(runs),
            "-p",
            "rows=3000",
            "-p",
            "rows-per-shard=1000",
            "-p",
            "processor=plugins.chatty:processor",
        ]
    )
    (run_dir,) = runs.iterdir()
    rec = json.loads((run_dir / "run.json").read_text())
    assert code == 0, rec.get("message")
    side = rec["workersRunner"]["pods"]
    nodes = rec["status"]["nodes"].values()
    pods = {side[n["id"]]["podName"]: n for n in nodes if n["type"] == "Pod"}
    assert len(pods) == 7  # check, produce, split, 3 shards, merge
    processor_lines = 0
    for pod, node in pods.items():
        for line in json_lines((run_dir / "pods" / pod / "stderr.log").read_text()):
            assert line["workflow"] == rec["metadata"]["name"]
            assert line["pod"] == pod
            # {{node.name}} is the step's node: a retried step's pods are its attempts, NAME(N)
            assert line["node"] == re.sub(r"\(\d+\)$", "", node["name"])
            assert line["node_id"] == node["id"]
            processor_lines += line.get("logger") == "chatty.processor"
    assert processor_lines == 3  # one batch per shard

    prom = run_dir / "metrics.prom"
    check = subprocess.run(
        [promtool, "check", "metrics"], input=prom.read_text(), capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    series = {
        ln.split("{")[0].split(" ")[0] for ln in prom.read_text().splitlines() if ln[:1] != "#"
    }
    assert series <= set(exported_series())
    # what a successful run records: everything but the failure counter
    assert {exported_series()[s] for s in series} == set(template_metrics()) - {
        "workers_step_failures_total"
    }
    text = prom.read_text()
    assert (
        'argo_workflows_workers_step_duration_seconds_count{step="shard",status="Succeeded"} 3'
        in text
    )
    assert "argo_workflows_workers_rows_processed_total 3000" in text
    assert "argo_workflows_workers_shard_startup_overhead_seconds_count 3" in text
    assert "metrics:" in capsys.readouterr().out
