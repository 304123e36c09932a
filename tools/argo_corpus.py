"""Run Argo's own examples through the local runner and say which end as Argo says they do.

    python tools/argo_corpus.py ARGO_CHECKOUT [--jobs 2] [--only PATTERN] [--verbose]
        [--json FILE] [--timeout 120] [--target N] [--sandbox auto] [--entrypoint IMAGE=CMD]

ARGO_CHECKOUT is an argo-workflows checkout (or a folder holding its ``examples/`` and
``test/e2e/functional/``). Every ``*.yaml``/``*.yml``/``*.json`` under ``examples/`` (its
subfolders too: Argo's TestExampleWorkflows walks them) and in ``test/e2e/functional/`` goes
through ``python -m workers run FILE`` and lands in one class:

    as Argo              the final phase is the one Argo's tests expect (argo_expect.py)
    rejected             the runner refused it before running (exit 2); the reason is kept
    wrong                it ran to another phase, or still ran after --timeout seconds
    crash                a traceback, an internal error, or any other exit
    not tested by Argo   labelled workflows.argoproj.io/no-test, or its Go test skips itself
                         or asserts no phase: there is nothing to compare with; not run
    interactive          its Go test stops, terminates or execs into the running workflow;
                         a plain run has no documented result; not run
    too heavy            a cluster scale test (thousands of pods): run only with --heavy
    too long             runs longer than LONG_SECONDS by design (argo_expect.DURATIONS):
                         run only with --long
    needs busybox        runs pods of alpine/busybox images, and busybox is not on this
                         machine: not run (see below)
    needs the network    calls a host this machine cannot reach: an http template's URL, or
                         a name a pod looks up with nslookup (which asks a DNS server and
                         never reads /etc/hosts); probed before running, not run
    needs a cluster      its Go test's outcome is decided by Kubernetes machinery a local
                         run has no equivalent of (argo_expect.CLUSTER_ONLY, with the
                         evidence: RBAC of a service account); not run
    library              WorkflowTemplates another file (or a Go test) uses through
                         templateRef/workflowTemplateRef; given to every run with --manifests
    not a workflow       no Workflow, WorkflowTemplate or CronWorkflow in it (ConfigMap, PVC,
                         WorkflowEventBinding, a dashboard); not run

A WorkflowTemplate or CronWorkflow no other file uses is run as a template and expected to
succeed: Argo's suite applies it but never submits it, so that is this script's own rule,
said in its expectation. The library of a run is its folder (examples/ or functional/), as
Argo's suite applies every template under examples/ before it submits any example.

Images are not pulled: commands run on this machine. ``argosay`` and ``cowsay`` come from
argo_shims.py through a bin folder put first on PATH; ``argoproj/argosay:v2`` has ENTRYPOINT
argosay and ``alpine/git`` has git (``--entrypoint``); python images use the runner's own
interpreter. A container starts in its image's WORKDIR, ``/`` unless the runner is told
otherwise, in a folder of the pod's own: a relative ``open("result.txt", "w")`` writes the
``/result.txt`` an output declares, with no option (alpine, busybox, debian, ubuntu, python and
argosay set no WORKDIR). Only the images that set one are given it (WORKDIRS, ``--workdir``). Pods of the alpine-based images (BUSYBOX_IMAGES) get busybox's sh and applets
first on their PATH, as those images have them (the runner's ``--image-path``, a folder of
links to this machine's ``busybox``); without busybox, files using them are not run ("needs
busybox"). Other programs (go, influx, nginx) must be on PATH or the file is refused.

Files no Go test submits are compared with what their own text says where the no-test label
or the folder's rule would say otherwise (argo_expect.OWN_TEXT); files that run long by design
get a timeout above their duration (argo_expect.DURATIONS).

Exit 0 whatever the results (a measurement), 2 on bad usage; with ``--target N``, 1 when
fewer than N files end as Argo or any file ends wrong or crash.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argo_expect
import argo_shims
from argo_expect import INTERACTIVE, NOT_TESTED, PHASE, Expectation

AS_ARGO, REJECTED, WRONG, CRASH = "as Argo", "rejected", "wrong", "crash"
LIBRARY, NOT_WORKFLOW, HEAVY = "library", "not a workflow", "too heavy"
LONG, NEEDS_BUSYBOX, NEEDS_NETWORK = "too long", "needs busybox", "needs the network"
NEEDS_CLUSTER = "needs a cluster"
CLASSES = (
    AS_ARGO,
    REJECTED,
    WRONG,
    CRASH,
    NOT_TESTED,
    INTERACTIVE,
    LIBRARY,
    NOT_WORKFLOW,
    HEAVY,
    LONG,
    NEEDS_BUSYBOX,
    NEEDS_NETWORK,
    NEEDS_CLUSTER,
)

# Files whose designed duration (argo_expect.DURATIONS) is above this are run only with --long.
LONG_SECONDS = 300.0

# Images whose sh and core programs are busybox's: busybox itself, alpine, and images built
# FROM alpine (python:alpine3.23's and curlimages/curl's Dockerfiles). Matched as --entrypoint
# is: with the tag, or without it for every tag.
BUSYBOX_IMAGES = ("busybox", "alpine", "python:alpine3.23", "curlimages/curl")

# Scale tests for a cluster: run only with --heavy. The runner holds one within its pod cap
# (the rest Pending, tools/README.md), but at that pace it runs for days.
HEAVY_FILES = {
    "test/e2e/functional/loop-sequence-many-long-pods.yaml": "10,000 pods of sleep 600, "
    "7,000 at once",
}

FOLDERS = ("examples", "test/e2e/functional", *(f"test/e2e/{f}" for f in argo_expect.E2E_FOLDERS))
SUFFIXES = (".yaml", ".yml", ".json")
RUNNABLE = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow")
TEMPLATE_KINDS = ("WorkflowTemplate", "ClusterWorkflowTemplate")
# Known ENTRYPOINTs of images the corpus runs with args only (their Dockerfiles).
ENTRYPOINTS = ("argoproj/argosay:v2=argosay", "alpine/git=git")
# WORKDIRs of the images the corpus runs that set one (their Dockerfiles); alpine, busybox,
# debian, ubuntu, the official python images and argoproj/argosay (v2 FROM v1 FROM ubuntu,
# test/e2e/images/argosay/) set none and start in `/`, the runner's default. Matched as
# --entrypoint is: with the tag, or without for every tag.
WORKDIRS = (
    "golang=/go",
    "alpine/git=/git",
)
RUNNER_PREFIX = "python -m workers run: "

_RUNNING: set[subprocess.Popen[bytes]] = set()  # the runners under way, for Ctrl-C
_LOCK = threading.Lock()


@dataclass
class Item:
    """One corpus file and what is known before running it."""

    path: Path
    rel: str  # relative to the checkout, e.g. examples/hello-world.yaml
    folder: str  # examples or test/e2e/functional
    kinds: list[str]
    expectation: Expectation | None = None
    cls: str | None = None  # decided without running (library, not tested, ...)
    note: str = ""
    timeout: float = 0.0


@dataclass
class Result:
    file: str
    folder: str
    cls: str
    expected: list[str] = field(default_factory=list)
    expectation: str = ""  # why that is what Argo expects
    phase: str | None = None
    exit_code: int | None = None
    reason: str = ""  # the rejection, the wrong phase's message, the crash
    group: str = ""  # the normalised reason, for grouping
    topic: str = ""  # the coarse to-do heading
    seconds: float = 0.0
    local: str = ""  # a file Argo does not test, run anyway: the class it would have had


# ------------------------------------------------------------------ planning


def load(path: Path) -> list[dict[str, Any]] | None:
    import yaml

    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return [d for d in docs if isinstance(d, dict)]


def _mappings(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a parsed YAML document, the document itself included."""
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _mappings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _mappings(v)


def references(docs: Iterable[dict[str, Any]]) -> set[str]:
    """The template names a file's templateRef and workflowTemplateRef point at."""
    return {
        ref["name"]
        for doc in docs
        for m in _mappings(doc)
        for ref in (m.get("templateRef"), m.get("workflowTemplateRef"))
        if isinstance(ref, dict) and isinstance(ref.get("name"), str)
    }


def corpus_files(root: Path) -> list[tuple[Path, str]]:
    found = []
    for folder in FOLDERS:
        base = root / folder
        if not base.is_dir():
            continue
        pattern = "*" if folder == "test/e2e/functional" else "**/*"
        for path in sorted(base.glob(pattern)):
            if path.suffix in SUFFIXES and path.is_file():
                found.append((path, folder))
    return found


def images(docs: Iterable[dict[str, Any]]) -> set[str]:
    """Every ``image`` a file's containers, scripts, sidecars and init containers name."""
    return {m["image"] for doc in docs for m in _mappings(doc) if isinstance(m.get("image"), str)}


def busybox_image(image: str) -> bool:
    from argo_local.model.images import of_image

    return bool(of_image(image, {name: ["busybox"] for name in BUSYBOX_IMAGES}))


def plan(
    root: Path,
    default_timeout: float,
    heavy: bool = False,
    long: bool = False,
    busybox: bool = True,
) -> list[Item]:
    """Every corpus file with its class (when it is not run) or its expected phase.
    ``busybox``: whether this machine has busybox for the pods of BUSYBOX_IMAGES."""
    items = _plan(root, default_timeout, heavy)
    for item in items:
        own = argo_expect.OWN_TEXT.get(item.rel)
        if own is not None and item.expectation is not None:
            item.expectation = own
        if item.rel in argo_expect.DURATIONS and item.cls in (None, NOT_TESTED):
            seconds, why = argo_expect.DURATIONS[item.rel]
            if seconds > LONG_SECONDS and not long:
                item.cls, item.note = LONG, f"runs {seconds:g}s by design: {why} (--long runs it)"
                continue
            # room for the runner's own start and the pods' starts beyond their sleeps
            item.timeout = max(item.timeout, seconds * 1.25 + 60)
        if item.rel in argo_expect.CLUSTER_ONLY and item.cls is None:
            item.cls, item.note = NEEDS_CLUSTER, argo_expect.CLUSTER_ONLY[item.rel]
            continue
        if item.cls in (None, NOT_TESTED) and item.expectation is not None:
            missing = [n for n in sorted(network_names(load(item.path) or [])) if not reachable(n)]
            if missing:
                item.cls = NEEDS_NETWORK
                item.note = (
                    f"reaches {missing[0]} over the network (an http template's URL, or "
                    "nslookup, which asks a DNS server), and this machine cannot"
                )
                continue
        if not busybox and item.cls in (None, NOT_TESTED) and item.expectation is not None:
            used = sorted(i for i in images(load(item.path) or []) if busybox_image(i))
            if used:
                item.cls = NEEDS_BUSYBOX
                item.note = (
                    f"image {used[0]} runs busybox's sh and applets, and busybox is not on "
                    "this machine (apt-get install busybox)"
                )
    return items


_URL_HOST = re.compile(r"https?://([A-Za-z0-9.-]+)")
_NSLOOKUP = re.compile(r"\bnslookup\s+([A-Za-z0-9][A-Za-z0-9.-]*)")


def network_names(docs: Iterable[dict[str, Any]]) -> set[str]:
    """The hosts a file's runs must reach: every http(s) URL's host in a file that has an
    ``http`` template (its url is often a parameter given elsewhere in the file), and every
    name a pod runs ``nslookup`` on (busybox's nslookup sends a DNS query; it never reads the
    pod's /etc/hosts, so hostAliases do not answer it)."""
    texts = [t for d in docs for t in _strings(d)]
    names = {m.group(1) for t in texts for m in _NSLOOKUP.finditer(t)}
    if any("http" in t for d in docs for t in _templates(d)):
        names |= {m.group(1) for t in texts for m in _URL_HOST.finditer(t)}
    return {n for n in names if n not in ("localhost", "127.0.0.1")}


def _templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A document's templates (a CronWorkflow's are in its workflowSpec)."""
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    if isinstance(spec.get("workflowSpec"), dict):
        spec = spec["workflowSpec"]
    return [t for t in spec.get("templates") or [] if isinstance(t, dict)]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


_REACHABLE: dict[str, bool] = {}


def reachable(host: str, seconds: float = 5.0) -> bool:
    """Whether this machine resolves ``host`` and opens a TCP connection to it (port 443,
    else 80), within ``seconds`` each; remembered per host."""
    if host not in _REACHABLE:
        found: list[bool] = []

        def probe() -> None:
            for port in (443, 80):
                try:
                    with socket.create_connection((host, port), timeout=seconds):
                        found.append(True)
                        return
                except OSError:
                    continue

        worker = threading.Thread(target=probe, daemon=True)
        worker.start()
        worker.join(seconds * 3)
        _REACHABLE[host] = bool(found)
    return _REACHABLE[host]


def _plan(root: Path, default_timeout: float, heavy: bool) -> list[Item]:
    go_found, go_library = argo_expect.from_go_tests(root / "test" / "e2e")
    functional = dict(argo_expect.FUNCTIONAL)
    for name, exp in go_found.items():
        # The checkout's own tests win, except where they assert no phase and the table says
        # what the asserted nodes imply.
        if not (exp.kind == NOT_TESTED and "asserts no" in exp.reason and name in functional):
            functional[name] = exp
    library_of_tests = {**argo_expect.FUNCTIONAL_LIBRARY, **go_library}

    files = corpus_files(root)
    loaded = {path: load(path) for path, _ in files}
    used_by: dict[str, set[str]] = defaultdict(set)
    for path, docs in loaded.items():
        for name in references(docs or []):
            used_by[name].add(path.relative_to(root).as_posix())

    items = []
    for path, folder in files:
        rel = path.relative_to(root).as_posix()
        docs = loaded[path]
        kinds = [str(d.get("kind") or "no kind") for d in docs or []]
        item = Item(path, rel, folder, kinds, timeout=default_timeout)
        items.append(item)
        if rel in HEAVY_FILES and not heavy:
            item.cls, item.note = HEAVY, f"{HEAVY_FILES[rel]} (--heavy runs it)"
            continue
        if folder.removeprefix("test/e2e/") in argo_expect.E2E_FOLDERS:
            _plan_e2e(item, root, docs, go_found, library_of_tests)
            continue
        if docs is None:
            item.expectation = argo_expect.phase("Succeeded", "unreadable YAML: the runner decides")
            continue
        runnable = [d for d in docs if d.get("kind") in RUNNABLE]
        if not runnable:
            item.cls, item.note = NOT_WORKFLOW, ", ".join(kinds) or "no document"
            continue
        workflows = [d for d in runnable if d.get("kind") == "Workflow"]
        label = argo_expect.no_test_label(workflows or runnable)
        if label is not None:
            item.cls, item.note = NOT_TESTED, f"labelled no-test: {label}"
            # for --run-untested: the phase its own label says, else what an example promises
            failing = label == "expected-failure"
            item.expectation = Expectation(
                PHASE,
                ("Failed", "Error") if failing else ("Succeeded",),
                f"not tested by Argo ({item.note}); compared with "
                + ("a failure, as labelled" if failing else "success, as an example"),
            )
            continue
        if not workflows and all(d.get("kind") in TEMPLATE_KINDS for d in runnable):
            names = {str((d.get("metadata") or {}).get("name")) for d in runnable}
            users = sorted({u for n in names for u in used_by.get(n, ()) if u != rel})
            if users or (path.name in library_of_tests and folder != "examples"):
                item.cls = LIBRARY
                item.note = "used by " + (
                    ", ".join(users) if users else library_of_tests[path.name]
                )
                continue
            item.expectation = argo_expect.phase(
                "Succeeded",
                "templates no Argo test submits or uses: run as a template, expected to succeed "
                "(this script's rule)",
            )
            continue
        if not workflows:
            item.expectation = argo_expect.phase(
                "Succeeded",
                "a CronWorkflow examples_test does not submit: its workflowSpec run once, "
                "expected to succeed (this script's rule)",
            )
            continue
        if folder == "examples":
            item.expectation = argo_expect.phase(
                "Succeeded", "examples_test.go TestExampleWorkflows: ToBeSucceeded"
            )
            continue
        exp = functional.get(path.name)
        if exp is None:
            exp = argo_expect.phase(
                "Succeeded", "no Go test submits it: expected to succeed (the folder's rule)"
            )
        if exp.kind != PHASE:
            item.cls, item.note = exp.kind, exp.reason
            continue
        item.expectation = exp
    return items


def _plan_e2e(
    item: Item,
    root: Path,
    docs: list[dict[str, Any]] | None,
    go_found: dict[str, Expectation],
    library: dict[str, str],
) -> None:
    """A file of test/e2e/testdata, expectedfailures or smoke: compared only where a Go test
    submits it and says how it ends (its wait or its status.Phase assertion); those folders
    hold the tests' own inputs, so a file no test submits has no expectation and is not run."""
    key = item.path.relative_to(root / "test" / "e2e").as_posix()
    exp = go_found.get(key)
    if not any(d.get("kind") in RUNNABLE for d in docs or []):
        item.cls = NOT_WORKFLOW
        item.note = "unreadable YAML" if docs is None else ", ".join(item.kinds) or "no document"
        return
    if key in library and exp is None:
        item.cls, item.note = LIBRARY, library[key]
        return
    if exp is None:
        item.cls = NOT_TESTED
        item.note = "no Go test submits it (the Go tests' own inputs): nothing to compare with"
        return
    if exp.kind != PHASE:
        item.cls, item.note = exp.kind, exp.reason
        return
    item.expectation = exp


# ------------------------------------------------------------------ running


def run_one(item: Item, work: Path, env: dict[str, str], runner_args: list[str]) -> Result:
    assert item.expectation is not None
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.rel)
    out_dir = work / "files" / slug
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = out_dir / "runs"
    library = item.path.parent if item.folder != "examples" else _examples_root(item.path)
    cmd = [
        sys.executable,
        "-m",
        "workers",
        "run",
        str(item.path),
        "--runs",
        str(runs),
        "--manifests",
        str(library),
        "--keep",
        "0",
        *runner_args,
    ]
    stdout_path, stderr_path = out_dir / "stdout.log", out_dir / "stderr.log"
    started = time.monotonic()
    timed_out = False
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=out_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        with _LOCK:
            _RUNNING.add(proc)
        try:
            code = proc.wait(timeout=item.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            code = _stop(proc)
        finally:
            with _LOCK:
                _RUNNING.discard(proc)
    seconds = time.monotonic() - started
    stderr = stderr_path.read_text(errors="replace")
    result = Result(
        item.rel,
        item.folder,
        CRASH,
        expected=list(item.expectation.phases),
        expectation=item.expectation.reason,
        exit_code=code,
        seconds=round(seconds, 2),
    )
    record = _record(runs)
    if record is not None:
        result.phase = (record.get("status") or {}).get("phase")
    classify(result, timed_out, item.timeout, code, stderr, record)
    return result


def _examples_root(path: Path) -> Path:
    for parent in path.parents:
        if parent.name == "examples":
            return parent
    return path.parent


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """Interrupt the runner as Ctrl-C would (it stops its pods and writes run.json), then kill
    its process group if it does not end."""
    for sig, grace in ((signal.SIGINT, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def _record(runs: Path) -> dict[str, Any] | None:
    for path in sorted(runs.glob("*/run.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
    return None


def classify(
    result: Result,
    timed_out: bool,
    timeout: float,
    code: int | None,
    stderr: str,
    record: dict[str, Any] | None,
) -> None:
    """Set the result's class and reason from how the runner ended."""
    traceback = _traceback(stderr)
    if traceback:
        result.cls, result.reason = CRASH, traceback
    elif timed_out:
        result.cls, result.reason = WRONG, f"still running after {timeout:g}s (stopped)"
    elif code == 2:
        line = _rejection(stderr)
        if line is None:
            result.cls, result.reason = CRASH, f"exit 2 without a reason: {_last_line(stderr)}"
        else:
            result.cls, result.reason = REJECTED, line
    elif code in (0, 1):
        if record is None:
            result.cls, result.reason = CRASH, f"exit {code} without run.json"
        elif _internal_error(record):
            result.cls, result.reason = CRASH, _internal_error(record)
        elif result.phase in result.expected:
            result.cls = AS_ARGO
        else:
            result.cls = WRONG
            result.reason = f"{result.phase}, Argo: {'/'.join(result.expected)}: " + _why(record)
    else:
        result.cls, result.reason = CRASH, f"exit {code}: {_last_line(stderr)}"
    result.group, result.topic = normalise(result.reason, result.cls)


def _traceback(stderr: str) -> str:
    """The runner's own uncaught exception (its frames are in the workers package), not a
    pod's traceback the runner may echo."""
    _, sep, rest = stderr.partition("Traceback (most recent call last)")
    if not sep or not re.search(r'File ".*/workers/', rest):
        return ""
    # the first exception raised is the cause; later ones are often its consequences (and
    # threads interleave their tracebacks)
    raised = re.search(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit)\b.*$", rest, re.M)
    return "traceback: " + (raised.group(0) if raised else "?")


def _rejection(stderr: str) -> str | None:
    lines = [line for line in stderr.splitlines() if line.startswith(RUNNER_PREFIX)]
    return lines[-1][len(RUNNER_PREFIX) :] if lines else None


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _internal_error(record: dict[str, Any]) -> str:
    notes = (record.get("workersRunner") or {}).get("notes") or []
    for note in notes:
        if "internal error" in str(note):
            return f"runner internal error: {note}"
    return ""


def _why(record: dict[str, Any]) -> str:
    """Where it went wrong: the earliest failed node none of whose children failed (the cause,
    not the parents it failed), with its message and last log line."""
    status = record.get("status") or {}
    side = (record.get("workersRunner") or {}).get("pods") or {}
    nodes = (status.get("nodes") or {}).values()
    failed = {n.get("id") for n in nodes if n.get("phase") in ("Failed", "Error")}
    # Leaves first: a DAG's children are its first tasks only (later ones hang below the
    # tasks they depend on), so a DAG whose failed task is not its child looks like a cause.
    causes = sorted(
        (n for n in nodes if n.get("id") in failed and not set(n.get("children") or ()) & failed),
        key=lambda n: (bool(n.get("children")), str(n.get("startedAt") or "")),
    )
    if not causes:
        return str(status.get("message") or "no node failed")
    node = causes[0]
    tail = (side.get(node.get("id")) or {}).get("logTail") or ""
    last = _last_line(tail) if isinstance(tail, str) and tail.strip() else ""
    if isinstance(tail, list) and tail:
        last = str(tail[-1])
    text = re.sub(r"^/\S+?\.(?:ya?ml|json): ", "", str(node.get("message") or node.get("phase")))
    msg = f"{node.get('displayName')}: {text}"
    return f"{msg} (log: {last[:200]})" if last else msg


# ------------------------------------------------------------------ grouping

# The to-do headings: the first pattern found in a normalised reason names its topic.
TOPICS: tuple[tuple[str, str], ...] = (
    (r"\{\{=|expression tags", "{{= }} expression tags"),
    (r"artifact|archiveLocation", "artifacts"),
    (r"\bonExit\b|\bhooks\b", "onExit / lifecycle hooks"),
    (r"\bresource\b", "resource templates (kubectl)"),
    (r"\bsuspend\b", "suspend templates"),
    (r"\bdaemon\b", "daemon steps"),
    (r"\bsidecars\b", "sidecars"),
    (r"\binitContainers\b", "initContainers"),
    (r"\bcontainerSet\b", "containerSet templates"),
    (r"\bhttp\b|\bplugin\b|executorPlugins", "http / plugin templates"),
    (r"synchronization|semaphore|mutex", "synchronization"),
    (r"\bmemoize\b", "memoize"),
    (r"configMapKeyRef|\bconfigMap\b|parameters\.valueFrom", "ConfigMap values"),
    (r"volumes\.(?:secret|configMap)", "secret / configMap volumes"),
    (r"\btemplateDefaults\b", "templateDefaults"),
    (r"\bdata\b", "data templates"),
    (r"\binline\b", "inline templates"),
    (r"\btargets?\b", "DAG target"),
    (r"\bfailFast\b", "failFast"),
    (r"\btimeout\b", "template timeout"),
    (r"\bglobalName\b", "global outputs (globalName)"),
    (r"aggregated outputs", "parameter aggregation (withParam over outputs.parameters)"),
    (r"variable not supported", "unsupported variables"),
    (r"^unsupported field retryStrategy", "workflow-level retryStrategy"),
    (r"podSpecPatch|fieldRef|podResources|resourceClaims", "pod fields"),
    (r"workflowTemplateRef|WorkflowTemplate .* not found|templateRef", "template references"),
    (r"several runnable documents", "several runnable documents in one file"),
    (r"was not supplied|not one of|\bparameters?\b", "parameters"),
    (r"\bvolumes?\b|volumeMounts|volumeClaim", "volumes"),
    (r"field not supported", "other unsupported fields"),
    (r"still running after", "hangs"),
    (r"exit code N\).*(?:not found|execvp)", "a program this host lacks"),
    (r"PATH: Permission denied", "script file not executable"),
)


def normalise(reason: str, cls: str) -> tuple[str, str]:
    """A reason without the file's own names (paths, list labels, quoted values, numbers), so
    the same cause in many files is one group; and its topic heading."""
    if not reason:
        return "", ""
    text = reason
    text = re.sub(r"^/\S+?\.(?:ya?ml|json): ", "", text)
    text = re.sub(r"^template [^:]+: ", "", text)
    text = re.sub(r"(?<![\w.])/[\w./-]+", "PATH", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    # a generateName's five characters (the controller's alphabet has no vowels)
    text = re.sub(r"-[bcdfghjklmnpqrstvwxz2456789]{5}\b", "-…", text)
    text = re.sub(r"several runnable documents \([^)]*\)", "several runnable documents (…)", text)
    text = re.sub(r"\b\d+(?:\.\d+)?\b", "N", text)
    field_path = re.match(r"(\S+): field not supported", text)
    variable = re.search(r"(\{\{[^}]+\}\}): variable not supported", text)
    if field_path:
        # spec.templates[].outputs.artifacts -> outputs.artifacts: the cause, not the place
        parts = [re.sub(r"(\[\])+$", "", p) for p in field_path.group(1).split(".")]
        while parts and parts[0] in ("spec", "templates", "workflowSpec", "steps", "dag", "tasks"):
            parts.pop(0)
        text = f"unsupported field {'.'.join(parts) or field_path.group(1)}"
    elif "expression tags" in text:
        text = "{{=...}} expression tags"
    elif variable:
        text = f"{variable.group(1)}: variable not supported"
    elif re.search(r"withParam: \{\{(?:steps|tasks)\.\S+\.outputs\.parameters\}\}", text):
        text = "withParam: {{steps|tasks.NAME.outputs.parameters}} (aggregated outputs)"
    elif cls == WRONG:
        text = re.sub(r"^(\w+), Argo: ([\w/]+): ", r"\1 instead of \2: ", text)
    topic = next(
        (name for pattern, name in TOPICS if re.search(pattern, text, re.I)),
        "other" if cls != WRONG else "phase differs",
    )
    return text[:200], topic


# ------------------------------------------------------------------ report


def summary(results: list[Result], verbose: bool) -> str:
    lines = []
    folders = sorted({r.folder for r in results})
    counts = {f: Counter(r.cls for r in results if r.folder == f) for f in folders}
    total = Counter(r.cls for r in results)
    width = max(len(c) for c in CLASSES)
    header = f"{'class':<{width}}  " + "  ".join(f"{f:>20}" for f in folders) + f"  {'total':>6}"
    lines += ["Argo corpus through `python -m workers run`", "", header, "-" * len(header)]
    for cls in CLASSES:
        row = "  ".join(f"{counts[f][cls]:>20}" for f in folders)
        lines.append(f"{cls:<{width}}  {row}  {total[cls]:>6}")
    row = "  ".join(f"{sum(counts[f].values()):>20}" for f in folders)
    lines += ["-" * len(header), f"{'files':<{width}}  {row}  {len(results):>6}"]
    run = [r for r in results if r.cls in (AS_ARGO, REJECTED, WRONG, CRASH)]
    if run:
        lines.append(
            f"\nof {len(run)} files run: {total[AS_ARGO]} as Argo "
            f"({100 * total[AS_ARGO] / len(run):.0f}%), {total[REJECTED]} rejected, "
            f"{total[WRONG]} wrong, {total[CRASH]} crash"
        )
    lines.append(headline(results))
    for cls in (REJECTED, WRONG, CRASH):
        chosen = [r for r in results if r.cls == cls]
        if not chosen:
            continue
        lines += ["", f"{cls} by topic (files):"]
        topics = Counter(r.topic for r in chosen)
        for topic, n in topics.most_common():
            lines.append(f"  {n:>4}  {topic}")
        lines += ["", f"{cls} by reason (files):"]
        groups = Counter(r.group for r in chosen)
        for group, n in groups.most_common():
            lines.append(f"  {n:>4}  {group}")
    for cls in (WRONG, CRASH):
        chosen = [r for r in results if r.cls == cls]
        if chosen:
            lines += ["", f"{cls} files:"]
            lines += [f"  {r.file}: {r.reason[:240]}" for r in chosen]
    untested = [r for r in results if r.local]
    if untested:
        local = Counter(r.local for r in untested)
        lines += [
            "",
            f"not tested by Argo, run anyway ({len(untested)} files; compared with success, "
            "or failure where labelled expected-failure, or what the file says: argo_expect.OWN_TEXT):",
            "  " + ", ".join(f"{local[c]} {c}" for c in (AS_ARGO, REJECTED, WRONG, CRASH)),
        ]
        topics = Counter(r.topic for r in untested if r.local == REJECTED)
        if topics:
            lines.append(
                "  rejected by topic: " + ", ".join(f"{t} {n}" for t, n in topics.most_common())
            )
        for r in untested:
            if r.local in (WRONG, CRASH):
                lines.append(f"  {r.local}: {r.file}: {r.reason[:220]}")
    if verbose:
        lines += ["", "every file:"]
        for r in sorted(results, key=lambda r: r.file):
            detail = r.reason or r.expectation
            phase = f" [{r.phase}]" if r.phase else ""
            lines.append(f"  {r.cls:<{width}}  {r.file}{phase}  {detail[:200]}")
    return "\n".join(lines)


def headline(results: list[Result]) -> str:
    """The issue's figure: the files that behave as Argo documents (those Argo tests ending as
    Argo, those it does not test ending as their expectation says) of every file run."""
    tested = Counter(r.cls for r in results if r.cls in (AS_ARGO, REJECTED, WRONG, CRASH))
    untested = Counter(r.local for r in results if r.local)
    both = tested + untested
    good = tested[AS_ARGO] + untested[AS_ARGO]
    return (
        f"behave as Argo documents: {good} of {sum(both.values())} files run "
        f"({tested[AS_ARGO]} Argo-tested as Argo + {untested[AS_ARGO]} untested as expected); "
        f"{both[REJECTED]} rejected before running, {both[WRONG]} wrong, {both[CRASH]} crash"
    )


def not_run(item: Item) -> Result:
    assert item.cls is not None
    return Result(item.rel, item.folder, item.cls, expectation=item.note, reason=item.note)


# ------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="argo_corpus.py",
        description="Run Argo's examples and functional test workflows through the local "
        "runner; count how many end as Argo's tests say.",
        allow_abbrev=False,
    )
    p.add_argument("checkout", type=Path, help="argo-workflows checkout (examples/, test/e2e/)")
    p.add_argument("--jobs", type=_positive, default=2, help="files run at once (default 2)")
    p.add_argument("--only", metavar="PATTERN", help="only files whose path matches (fnmatch)")
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per file before it counts as hung"
    )
    p.add_argument("--sandbox", choices=("auto", "bwrap", "remap"), default="auto")
    p.add_argument(
        "--entrypoint",
        action="append",
        default=[],
        metavar="IMAGE=COMMAND",
        help=f"another image ENTRYPOINT for the runner (built in: {', '.join(ENTRYPOINTS)})",
    )
    p.add_argument(
        "--run-untested",
        action="store_true",
        help="run the files Argo does not test too (their class stays 'not tested by Argo'; "
        "what the run gave is listed on its own)",
    )
    p.add_argument(
        "--heavy",
        action="store_true",
        help=f"run the scale tests too ({', '.join(HEAVY_FILES)})",
    )
    p.add_argument(
        "--long",
        action="store_true",
        help=f"run the files that run longer than {LONG_SECONDS:g}s by design too "
        "(argo_expect.DURATIONS)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write every result as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="list every file")
    p.add_argument(
        "--target",
        type=int,
        metavar="N",
        help="exit 1 unless at least N files end as Argo and none wrong or crash",
    )
    p.add_argument("--work", type=Path, help="keep run folders here (default: a temp folder)")
    p.add_argument(
        "--print-expectations",
        action="store_true",
        help="print each file's class or expected phase with its source, and run nothing",
    )
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected 1 or more")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Started in the background, a shell ignores SIGINT for us and so for every runner, which
    # then could not be interrupted (it writes run.json when it is): a handler of our own is
    # reset to the default in each child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    root = args.checkout.resolve()
    if not any((root / f).is_dir() for f in FOLDERS):
        sys.stderr.write(f"argo_corpus.py: {root}: no examples/ or test/e2e/functional/\n")
        return 2
    busybox = shutil.which("busybox")
    if busybox is None:
        sys.stderr.write(
            "argo_corpus.py: busybox is not on this machine: the files whose pods run "
            f"{', '.join(BUSYBOX_IMAGES)} images are not run (apt-get install busybox)\n"
        )
    items = plan(root, args.timeout, args.heavy, args.long, busybox is not None)
    if args.only:
        items = [i for i in items if fnmatch.fnmatch(i.rel, f"*{args.only}*")]
    if args.print_expectations:
        for item in items:
            what = item.cls or "expect " + "/".join(
                item.expectation.phases if item.expectation else ()
            )
            why = item.note or (item.expectation.reason if item.expectation else "")
            print(f"{item.rel}\t{what}\t{why}")
        return 0
    results = measure(items, args)
    text = summary(results, args.verbose)
    print(text)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    if args.target is not None:
        classes = Counter(r.cls for r in results)
        if classes[AS_ARGO] < args.target or classes[WRONG] or classes[CRASH]:
            return 1
    return 0


def measure(items: list[Item], args: argparse.Namespace) -> list[Result]:
    work = args.work or _temp_work()
    work.mkdir(parents=True, exist_ok=True)
    try:
        # The bin folder must not lie under /tmp: each pod sees its own /tmp in bubblewrap.
        bin_dir = argo_shims.install(work / "bin")
        env = dict(os.environ)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        runner_args = ["--sandbox", args.sandbox]
        for spec in (*ENTRYPOINTS, *args.entrypoint):
            runner_args += ["--entrypoint", spec]
        for spec in WORKDIRS:
            runner_args += ["--workdir", spec]
        applets = busybox_applets(work / "busybox")
        if applets is not None:
            for image in BUSYBOX_IMAGES:
                runner_args += ["--image-path", f"{image}={applets}"]
        results: dict[str, Result] = {}
        to_run = [
            i
            for i in items
            if i.cls is None or (args.run_untested and i.cls == NOT_TESTED and i.expectation)
        ]
        for item in items:
            if item not in to_run:
                results[item.rel] = not_run(item)
        done = 0
        pool = ThreadPoolExecutor(max_workers=args.jobs)
        try:
            futures = {pool.submit(run_one, i, work, env, runner_args): i for i in to_run}
            for future in as_completed(futures):
                item = futures[future]
                result = future.result()
                if item.cls is not None:
                    result.local, result.cls = result.cls, item.cls
                results[item.rel] = result
                done += 1
                sys.stderr.write(
                    f"[{done}/{len(to_run)}] {result.cls:<9} {item.rel} ({result.seconds:.1f}s)\n"
                )
        except KeyboardInterrupt:
            # Runners live in their own sessions (so a timeout can stop one alone): stop them.
            pool.shutdown(wait=False, cancel_futures=True)
            with _LOCK:
                running = list(_RUNNING)
            for proc in running:
                _stop(proc)
            raise
        pool.shutdown()
        return [results[i.rel] for i in items]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def busybox_applets(folder: Path) -> Path | None:
    """A folder of links named after each applet of this machine's busybox (what an alpine
    image has in /bin and /usr/bin), or None without busybox. Not under /tmp: each pod sees
    its own /tmp in bubblewrap."""
    busybox = shutil.which("busybox")
    if busybox is None:
        return None
    listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    folder.mkdir(parents=True, exist_ok=True)
    target = Path(busybox).resolve()
    for name in listed.stdout.split():
        link = folder / name
        if "/" not in name and not link.exists():
            link.symlink_to(target)
    return folder


def _temp_work() -> Path:
    base = Path("/var/tmp") if os.access("/var/tmp", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="argo-corpus-", dir=base))


if __name__ == "__main__":
    sys.exit(main())
