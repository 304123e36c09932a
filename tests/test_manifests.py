"""Offline validation of the Argo WorkflowTemplate library in manifests/ (no cluster needed).

The rendered base, the example overlay and the examples are parsed into Argo's own models with
unknown fields rejected, their wiring is checked against the steps' argparse parsers, and the
negative tests prove each check fails on a broken copy.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from conftest import unavailable

import workers

try:  # tests/ may or may not become a package on other branches
    from tests import manifest_checks as mc
except ImportError:
    import manifest_checks as mc  # type: ignore[no-redef]

# ------------------------------------------------------------------ fixtures


def _render_or_skip(path: Path) -> list[mc.Doc]:
    if mc.kustomize_command() is None:
        unavailable(mc.NO_KUSTOMIZE)
    return mc.render(path)


@pytest.fixture(scope="module")
def base_docs() -> list[mc.Doc]:
    """The library as written (independent of kubectl, so most checks run everywhere)."""
    return [d for f in mc.base_files() for d in mc.load(f)]


@pytest.fixture(scope="module")
def rendered() -> list[mc.Doc]:
    return _render_or_skip(mc.MANIFESTS)


@pytest.fixture(scope="module")
def overlay() -> list[mc.Doc]:
    return _render_or_skip(mc.EXAMPLES / "overlay")


@pytest.fixture(scope="module")
def examples() -> list[mc.Doc]:
    return [d for f in mc.example_files() for d in mc.load(f)]


@pytest.fixture(scope="module")
def lib(base_docs: list[mc.Doc]) -> dict[str, dict[str, mc.Doc]]:
    return mc.library(base_docs)


def _argo(docs: list[mc.Doc]) -> list[mc.Doc]:
    return [d for d in docs if d["kind"] in ("WorkflowTemplate", "Workflow", "CronWorkflow")]


def _doc(docs: list[mc.Doc], name: str) -> mc.Doc:
    return copy.deepcopy(next(d for d in docs if d["metadata"].get("name") == name))


# ------------------------------------------------------------------ schema


def test_library_has_each_step_and_the_pipeline(lib: dict[str, dict[str, mc.Doc]]) -> None:
    assert set(lib) == {
        "workers-check",
        "workers-produce",
        "workers-split",
        "workers-shard",
        "workers-merge",
        "workers-cleanup",
        "workers-pipeline",
    }


def test_rendered_base_matches_the_files(rendered: list[mc.Doc], base_docs: list[mc.Doc]) -> None:
    assert sorted(map(mc.name_of, rendered)) == sorted(map(mc.name_of, base_docs))
    images = {
        t["container"]["image"]
        for d in _argo(rendered)
        for t in d["spec"]["templates"]
        if "container" in t
    }
    assert images == {mc.IMAGE_PARAM}
    # The images transformer reached the image parameters' defaults (kustomizeconfig.yaml),
    # naming this version (workers.__version__ is the one version source).
    assert mc.default_images(_argo(rendered)) == {
        f"ghcr.io/workers-project/workers:{workers.__version__}"
    }


def test_overlay_images_reach_every_image_parameter(overlay: list[mc.Doc]) -> None:
    assert mc.default_images(_argo(overlay)) == {"ghcr.io/workers-project/workers:0.2.0"}


@pytest.mark.parametrize("source", ["base_docs", "rendered"])
def test_every_step_runs_the_image_parameter(
    source: str, request: pytest.FixtureRequest, lib: dict
) -> None:
    docs = _argo(request.getfixturevalue(source))
    assert [p for d in docs for p in mc.image_problems(d, lib)] == []
    pipeline = _doc(docs, "workers-pipeline")
    assert "image" in mc.workflow_parameters(pipeline, docs)


@pytest.mark.parametrize("source", ["base_docs", "rendered", "overlay", "examples"])
def test_manifests_parse_into_argo_models_with_unknown_fields_rejected(
    source: str, request: pytest.FixtureRequest
) -> None:
    docs = request.getfixturevalue(source)
    assert _argo(docs), f"no Argo documents in {source}"
    problems = [p for d in docs for p in mc.schema_problems(d)]
    assert problems == []


def test_example_kinds(examples: list[mc.Doc]) -> None:
    kinds = sorted(d["kind"] for d in examples)
    assert kinds == ["CronWorkflow", "Workflow"]
    for d in examples:
        assert mc.workflow_spec(d)["workflowTemplateRef"] == {"name": "workers-pipeline"}


def test_overlay_patches_land_where_intended(overlay: list[mc.Doc]) -> None:
    pipeline = _doc(overlay, "workers-pipeline")
    params = {p["name"]: p["value"] for p in pipeline["spec"]["arguments"]["parameters"]}
    assert params["storage-class"] == "efs-sc"
    assert pipeline["spec"]["templates"][0]["parallelism"] == 20
    claim = pipeline["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    shard = _doc(overlay, "workers-shard")["spec"]["templates"][0]
    assert shard["container"]["resources"]["limits"]["memory"] == "4Gi"
    assert {d["metadata"].get("namespace") for d in overlay} == {"data-jobs"}
    binding = next(d for d in overlay if d["kind"] == "RoleBinding")
    assert binding["subjects"][0]["namespace"] == "data-jobs"


# ------------------------------------------------------------------ wiring


@pytest.mark.parametrize("source", ["base_docs", "examples"])
def test_references_resolve(
    source: str, request: pytest.FixtureRequest, lib: dict, base_docs: list[mc.Doc]
) -> None:
    docs = request.getfixturevalue(source)
    problems = [p for d in _argo(docs) for p in mc.reference_problems(d, lib, base_docs)]
    assert problems == []


@pytest.mark.parametrize("source", ["base_docs", "examples"])
def test_every_step_argument_is_accepted_by_its_parser(
    source: str, request: pytest.FixtureRequest, lib: dict, base_docs: list[mc.Doc]
) -> None:
    docs = request.getfixturevalue(source)
    problems = [p for d in _argo(docs) for p in mc.argument_problems(d, lib, base_docs)]
    assert problems == []


def test_every_container_runs_an_existing_step(base_docs: list[mc.Doc]) -> None:
    modules = {
        mc.step_module(t)
        for d in _argo(base_docs)
        for t in d["spec"]["templates"]
        if "container" in t
    }
    assert modules == {
        "workers.check",
        "workers.produce",
        "workers.split",
        "workers.shard",
        "workers.merge",
        "workers.cleanup",
    }


def test_file_outputs_are_written_by_the_step(base_docs: list[mc.Doc]) -> None:
    assert [p for d in _argo(base_docs) for p in mc.output_path_problems(d)] == []


def test_fan_out_reads_splits_file_output(lib: dict[str, dict[str, mc.Doc]]) -> None:
    main = lib["workers-pipeline"]["main"]
    shard = next(t for t in main["dag"]["tasks"] if t["name"] == "shard")
    # By index: the parameter is the shard count, a few bytes whatever the width.
    assert "withParam" not in shard
    assert shard["withSequence"] == {"count": "{{tasks.plan.outputs.parameters.shard-count}}"}
    args = {p["name"]: p["value"] for p in shard["arguments"]["parameters"]}
    assert args["shard"] == "{{item}}"
    for name in ("split", "split-table", "split-files"):
        assert lib["workers-split"][name]["outputs"]["parameters"][0]["valueFrom"] == {
            "path": "/tmp/shard-count"
        }
    # the default only serves the count metric of a failed attempt (manifest_checks.metric_problems)
    # the rows metric reads what shard wrote (--stats-dir), since the item no longer carries it
    tmpl = lib["workers-shard"]["shard"]
    rows = next(p for p in tmpl["outputs"]["parameters"] if p["name"] == "rows")
    assert rows["valueFrom"]["path"] == "/tmp/stats/rows"
    metric = next(
        m for m in tmpl["metrics"]["prometheus"] if m["name"] == "workers_rows_processed_total"
    )
    assert metric["counter"]["value"] == "{{outputs.parameters.rows}}"
    assert lib["workers-produce"]["produce"]["outputs"]["parameters"][0]["valueFrom"] == {
        "path": "/tmp/count",
        "default": "0",
    }
    args = lib["workers-shard"]["shard"]["container"]["args"]
    assert args[args.index("--attempt") + 1] == "{{retries}}"
    assert isinstance(main["parallelism"], int)


def test_pipeline_storage_defaults(lib: dict[str, dict[str, mc.Doc]], base_docs: list) -> None:
    pipeline = _doc(base_docs, "workers-pipeline")["spec"]
    claim = pipeline["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "workers-shared"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "{{workflow.parameters.storage-class}}"
    for name, tmpl in [(n, t) for wt in lib.values() for n, t in wt.items()]:
        if "container" in tmpl and name not in ("check", "produce"):
            mounts = {m["name"]: m["mountPath"] for m in tmpl["container"]["volumeMounts"]}
            assert mounts["workers-shared"] == "/mnt/shared", name
    for key in ("activeDeadlineSeconds", "podGC", "ttlStrategy"):
        assert key in pipeline


@pytest.mark.parametrize("source", ["base_docs", "examples"])
def test_default_sizes_stay_under_the_max_shards_guard(
    source: str, request: pytest.FixtureRequest, base_docs: list[mc.Doc]
) -> None:
    for doc in _argo(request.getfixturevalue(source)):
        params = mc.workflow_parameters(doc, base_docs)
        if "rows" in params:
            shards = -(-int(params["rows"]) // int(params["rows-per-shard"]))
            assert 1 <= shards <= int(params["max-shards"]), mc.name_of(doc)


def test_security_context_runs_as_the_image_user(base_docs: list[mc.Doc]) -> None:
    uid = mc.image_uid()
    assert [p for d in _argo(base_docs) for p in mc.security_problems(d, uid)] == []


def test_credentials_only_from_secrets(base_docs: list[mc.Doc], examples: list) -> None:
    assert [p for d in _argo(base_docs + examples) for p in mc.secret_problems(d)] == []
    for d in _argo(base_docs):
        for t in d["spec"]["templates"]:
            for env in (t.get("container") or {}).get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if env["name"] == "WORKERS_DATABASE_URL":
                    assert ref == {"name": "workers-database", "key": "url"}
                elif env["name"].startswith("AWS_"):
                    assert ref["name"] == "workers-bucket" and ref["optional"] is True


def test_metrics_share_one_descriptor_per_name(base_docs: list[mc.Doc]) -> None:
    assert mc.metric_problems(_argo(base_docs)) == []


# ------------------------------------------------------------------ retry policy

RETRY_CASES = [
    # exit code, node phase, node message, retry?
    ("75", "Failed", "main: Error (exit code 75)", True),
    ("2", "Failed", "main: Error (exit code 2)", False),
    ("3", "Failed", "main: Error (exit code 3)", False),
    ("4", "Failed", "main: Error (exit code 4)", False),
    ("137", "Failed", "main: OOMKilled (exit code 137)", False),
    ("-1", "Error", "pod deleted", True),
    ("-1", "Failed", "The node was low on resource: memory. Threshold quantity: 100Mi", True),
    ("143", "Failed", "Pod was terminated in response to imminent node shutdown.", True),
    ("-1", "Error", "Pod failed before main container starts due to ContainerCreating", True),
]


@pytest.mark.parametrize(("code", "status", "message", "retry"), RETRY_CASES)
def test_retry_expression(
    lib: dict[str, dict[str, mc.Doc]], code: str, status: str, message: str, retry: bool
) -> None:
    strategies = [
        t["retryStrategy"] for wt in lib.values() for t in wt.values() if "container" in t
    ]
    assert len(strategies) == 8
    for s in strategies:
        assert s["retryPolicy"] == "Always"  # the expression alone decides, on every Argo >= 3.2
        assert mc.retry_decision(s["expression"], code, status, message) is retry


# ------------------------------------------------------------------ the checks can fail


def test_misspelled_field_is_rejected_with_its_path(base_docs: list[mc.Doc]) -> None:
    doc = _doc(base_docs, "workers-shard")
    doc["spec"]["templates"][0]["retryStrategy"]["limt"] = "3"
    problems = mc.schema_problems(doc)
    assert problems and problems[0].startswith(
        "WorkflowTemplate/workers-shard: spec.templates.0.retryStrategy.limt: Extra inputs"
    )


def test_misspelled_kubernetes_field_is_rejected_with_its_path(base_docs: list[mc.Doc]) -> None:
    doc = _doc(base_docs, "workers-pipeline")
    doc["spec"]["volumeClaimTemplates"][0]["spec"]["acessModes"] = ["ReadWriteMany"]
    tmpl = _doc(base_docs, "workers-merge")
    tmpl["spec"]["templates"][0]["container"]["securityContext"]["runAsUsr"] = 10001
    assert any(
        ".volumeClaimTemplates.0.spec.acessModes: Extra inputs" in p
        for p in mc.schema_problems(doc)
    )
    assert any(
        "spec.templates.0.container.securityContext.runAsUsr: Extra inputs" in p
        for p in mc.schema_problems(tmpl)
    )


def test_renamed_input_parameter_is_caught(lib: dict, base_docs: list[mc.Doc]) -> None:
    shard = _doc(base_docs, "workers-shard")
    inputs = shard["spec"]["templates"][0]["inputs"]["parameters"]
    next(p for p in inputs if p["name"] == "store")["name"] = "store-url"
    docs = [shard if d["metadata"]["name"] == "workers-shard" else d for d in base_docs]
    broken_lib = mc.library(docs)
    pipeline = _doc(base_docs, "workers-pipeline")
    problems = mc.reference_problems(shard, broken_lib, docs) + mc.reference_problems(
        pipeline, broken_lib, docs
    )
    assert any("undeclared inputs.parameters.store" in p for p in problems)
    assert any(
        "passes store, not an input of templateRef workers-shard/shard" in p for p in problems
    )


def test_renamed_workflow_parameter_is_caught(lib: dict, base_docs: list[mc.Doc]) -> None:
    pipeline = _doc(base_docs, "workers-pipeline")
    params = pipeline["spec"]["arguments"]["parameters"]
    next(p for p in params if p["name"] == "rows-per-shard")["name"] = "shard-rows"
    problems = mc.reference_problems(pipeline, lib, base_docs)
    assert any("undeclared workflow.parameters.rows-per-shard" in p for p in problems)


def test_broken_step_output_reference_is_caught(lib: dict, base_docs: list[mc.Doc]) -> None:
    pipeline = _doc(base_docs, "workers-pipeline")
    plan = next(t for t in pipeline["spec"]["templates"] if t["name"] == "plan")
    plan["steps"][1][0]["arguments"]["parameters"][0]["value"] = (
        "{{steps.produce.outputs.parameters.rows}}"
    )
    problems = mc.reference_problems(pipeline, lib, base_docs)
    assert any("produce has no output rows" in p for p in problems)


def test_unknown_workflow_argument_in_an_example_is_caught(
    lib: dict, base_docs: list[mc.Doc], examples: list[mc.Doc]
) -> None:
    wf = copy.deepcopy(next(d for d in examples if d["kind"] == "Workflow"))
    wf["spec"]["arguments"]["parameters"].append({"name": "row", "value": "5"})
    problems = mc.reference_problems(wf, lib, base_docs)
    assert any("argument row is not a parameter of workers-pipeline" in p for p in problems)


def test_flag_the_step_does_not_accept_is_caught(lib: dict, base_docs: list[mc.Doc]) -> None:
    split = _doc(base_docs, "workers-split")
    args = split["spec"]["templates"][0]["container"]["args"]
    args[args.index("--rows-per-shard")] = "--rows-per-shards"
    problems = mc.argument_problems(split, lib, base_docs)
    assert any("unrecognized arguments: --rows-per-shards" in p for p in problems)


def test_bad_value_for_a_step_is_caught(lib: dict, base_docs: list[mc.Doc]) -> None:
    pipeline = _doc(base_docs, "workers-pipeline")
    params = pipeline["spec"]["arguments"]["parameters"]
    next(p for p in params if p["name"] == "rows-per-shard")["value"] = "lots"
    problems = mc.argument_problems(pipeline, lib, base_docs)
    assert any("--rows-per-shard: expected a positive integer, got 'lots'" in p for p in problems)


def test_uid_comes_from_the_dockerfile(tmp_path: Path, base_docs: list[mc.Doc]) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11 AS builder\nUSER 0\nFROM python:3.11\nARG UID=1234\nARG GID=1234\n"
        "USER ${UID}:${GID}\n"
    )
    assert mc.image_uid(dockerfile) == 1234
    assert mc.image_uid(tmp_path / "absent") == mc.DEFAULT_UID
    shard = _doc(base_docs, "workers-shard")
    problems = mc.security_problems(shard, mc.image_uid(dockerfile))
    assert any("securityContext.runAsUser is 10001, want 1234" in p for p in problems)


def test_dropped_security_setting_is_caught(base_docs: list[mc.Doc]) -> None:
    merge = _doc(base_docs, "workers-merge")
    del merge["spec"]["templates"][0]["container"]["securityContext"]["capabilities"]
    problems = mc.security_problems(merge, mc.DEFAULT_UID)
    assert any("capabilities is None" in p for p in problems)


def test_bad_merge_format_is_caught(lib: dict, base_docs: list[mc.Doc]) -> None:
    merge = _doc(base_docs, "workers-merge")
    merge["spec"]["templates"][0]["inputs"]["parameters"][1]["default"] = "csv"
    problems = mc.argument_problems(merge, lib, base_docs)
    assert any("unknown --format 'csv'" in p for p in problems)


def test_call_without_the_image_is_caught(lib: dict, base_docs: list[mc.Doc]) -> None:
    pipeline = _doc(base_docs, "workers-pipeline")
    main = next(t for t in pipeline["spec"]["templates"] if t["name"] == "main")
    merge = next(t for t in main["dag"]["tasks"] if t["name"] == "merge")
    params = merge["arguments"]["parameters"]
    params[:] = [p for p in params if p["name"] != "image"]
    shard = _doc(base_docs, "workers-shard")
    shard["spec"]["templates"][0]["container"]["image"] = "ghcr.io/workers-project/workers:latest"
    problems = mc.image_problems(pipeline, lib) + mc.image_problems(shard, lib)
    assert any("calls templateRef workers-merge/merge with image None" in p for p in problems)
    assert any("shard: container.image is 'ghcr.io/" in p for p in problems)


def test_literal_database_url_is_caught(base_docs: list[mc.Doc]) -> None:
    produce = _doc(base_docs, "workers-produce")
    env = produce["spec"]["templates"][0]["container"]["env"]
    env[0] = {"name": "WORKERS_DATABASE_URL", "value": "postgresql://u:pw@db/app"}
    assert mc.secret_problems(produce)


# ------------------------------------------------------------------ policies (issue 22)


@pytest.mark.parametrize(
    ("template", "step"),
    [("workers-produce", "produce"), ("workers-shard", "shard"), ("workers-merge", "merge")],
)
def test_termination_grace_covers_the_steps_grace(
    lib: dict[str, dict[str, mc.Doc]], template: str, step: str
) -> None:
    """The spot notice: the pod's terminationGracePeriodSeconds is the step's --grace-seconds
    plus a margin, within the 15 s GKE gives a spot node's pods."""
    import json

    t = lib[template][step]
    args = t["container"]["args"]
    grace = float(args[args.index("--grace-seconds") + 1])
    period = json.loads(t["podSpecPatch"])["terminationGracePeriodSeconds"]
    assert grace + 3 <= period <= 15, (grace, period)


def test_merge_runs_after_a_partial_fan_out_and_cleanup_only_after_a_complete_one(
    lib: dict[str, dict[str, mc.Doc]],
) -> None:
    tasks = {t["name"]: t for t in lib["workers-pipeline"]["main"]["dag"]["tasks"]}
    assert tasks["merge"]["depends"] == "shard || shard.AnySucceeded"
    assert tasks["cleanup"]["depends"] == "merge && shard"
    params = {p["name"]: p["value"] for p in tasks["merge"]["arguments"]["parameters"]}
    assert params["min-success-ratio"] == "{{workflow.parameters.min-success-ratio}}"
    merge = lib["workers-merge"]["merge"]
    assert "--min-success-ratio" in merge["container"]["args"]
    metrics = {m["name"]: m for m in merge["metrics"]["prometheus"]}
    assert metrics["workers_merge_missing_shards_total"]["counter"]["value"] == (
        "{{outputs.parameters.missing-shards}}"
    )
