"""``PROG FILE|TEMPLATE_NAME [-p name=value ...]``: run a workflow on this machine.

``PROG`` and what the product adds (help, version, the runs folder, its summary lines and
timeline page) come from the :class:`~argo_local.embedding.Embedding` given to :func:`main`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from argo_local import resume, runs
from argo_local.embedding import Embedding
from argo_local.engine.run import ERROR, Node, Options, Run
from argo_local.model import configmaps, spec
from argo_local.model.configmaps import ConfigMaps
from argo_local.model.secretrefs import secret_lookup
from argo_local.model.spec import Document, Library, Notes, SpecError
from argo_local.model.wiring import Wiring, effective_spec, workflow_parameters
from argo_local.pods import capacity, reaper
from argo_local.report import report
from argo_local.report.progress import Progress
from workers.redaction import redact

EPILOG = """Secrets (env valueFrom.secretKeyRef) come from the environment: <SECRET>_<KEY>
(uppercased, - and . as _) or the container's env var name, else from .env.

exit codes: 0 the workflow succeeded, 1 it failed, 2 it cannot run locally
"""


KEEP_DEFAULT = 10


def build_parser(embedding: Embedding | None = None) -> argparse.ArgumentParser:
    embedding = embedding or Embedding()
    p = argparse.ArgumentParser(
        prog=embedding.prog,
        description="Run an Argo Workflow, WorkflowTemplate or CronWorkflow with local processes.",
        epilog=embedding.epilog or EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a misspelt flag is an error, never a guess at another one
    )
    p.add_argument("--version", action="version", version=embedding.version)
    p.add_argument("target", metavar="FILE|TEMPLATE_NAME")
    p.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="workflow parameter, like argo submit -p (repeatable)",
    )
    p.add_argument(
        "--manifests",
        type=Path,
        help="folder of WorkflowTemplates and ConfigMaps, searched recursively (default "
        "./manifests, else the installed library)",
    )
    p.add_argument(
        "--runs",
        type=Path,
        default=embedding.runs_folder,
        help=f"runs folder (default ./{embedding.runs_folder})",
    )
    p.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "remap"),
        default="auto",
        help="bwrap: mount namespaces; remap: rewrite container paths; auto: bwrap if it works",
    )
    p.add_argument("--env-file", type=Path, help="secrets file (default ./.env)")
    p.add_argument(
        "--code",
        type=Path,
        metavar="DIR",
        help="your project's folder, importable in every pod (default: the current folder)",
    )
    p.add_argument(
        "--keep",
        type=_count,
        default=KEEP_DEFAULT,
        metavar="N",
        help="keep the newest N runs in the runs folder, this one included; older finished "
        "runs are removed (default 10; 0 keeps every run)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="run a finished run again in its folder (a run folder, or a run's name under --runs), "
        "with its parameters: the pod steps that succeeded are kept with their outputs, the rest "
        "run (argo retry)",
    )
    p.add_argument(
        "--entrypoint",
        action="append",
        default=[],
        type=_entrypoint,
        metavar="IMAGE=COMMAND",
        help="the ENTRYPOINT of IMAGE (with its tag, or without for every tag): a container of "
        "that image without command runs COMMAND (split like a shell) then its args "
        "(repeatable; images are not pulled, so the runner cannot read it)",
    )
    p.add_argument(
        "--image-path",
        action="append",
        default=[],
        type=_image_path,
        metavar="IMAGE=DIR[:DIR...]",
        help="folders of IMAGE's own programs (with its tag, or without for every tag), put first "
        "on PATH in its pods, where this machine's differ: e.g. alpine=DIR with busybox's applets "
        "linked in DIR gives alpine pods busybox's sh (repeatable)",
    )
    p.add_argument(
        "--workdir",
        action="append",
        default=[],
        type=_workdir,
        metavar="IMAGE=DIR",
        help="the WORKDIR of IMAGE (with its tag, or without for every tag): its containers "
        "without workingDir start there (e.g. node=/usr/src/app), in a folder of the pod's own "
        "unless a volume is mounted there; without it they start in / of their own, as in an "
        "image without WORKDIR (repeatable)",
    )
    p.add_argument(
        "--max-pods",
        type=_positive,
        metavar="N",
        help="run at most N pods at once, the others waiting Pending, as on a full cluster "
        "(default: what this machine holds, from its CPUs, memory and process and file limits; "
        "the run's header says how many)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="stream every pod's stderr")
    return p


def _image_path(text: str) -> tuple[str, list[str]]:
    image, sep, folders = text.partition("=")
    dirs = [d for d in folders.split(os.pathsep) if d]
    if not sep or not image.strip() or not dirs:
        raise argparse.ArgumentTypeError(f"expected IMAGE=DIR[:DIR...], got {text!r}")
    for d in dirs:
        if not os.path.isabs(d) or not os.path.isdir(d):
            raise argparse.ArgumentTypeError(f"{text!r}: {d} is not an absolute folder path")
    return image.strip(), dirs


def _workdir(text: str) -> tuple[str, str]:
    image, sep, folder = text.partition("=")
    if not sep or not image.strip() or not folder:
        raise argparse.ArgumentTypeError(f"expected IMAGE=DIR, got {text!r}")
    if not folder.startswith("/"):
        # a container's working folder is absolute (the runtime refuses a relative one)
        raise argparse.ArgumentTypeError(f"{text!r}: {folder} is not an absolute path")
    return image.strip(), folder


def _entrypoint(text: str) -> tuple[str, list[str]]:
    import shlex

    image, sep, command = text.partition("=")
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if not sep or not image.strip() or not words:
        raise argparse.ArgumentTypeError(f"expected IMAGE=COMMAND, got {text!r}")
    return image.strip(), words


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _overrides(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SpecError(f"-p {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def main(argv: Sequence[str] | None = None, embedding: Embedding | None = None) -> int:
    locks: list[int] = []  # the run folder's lock, held while the run runs (runs.prune skips it)
    try:
        return _main(argv, locks, embedding or Embedding())
    finally:
        for fd in locks:
            os.close(fd)


@dataclass
class _Start:
    """A run ready to execute: its documents, the run, its folder and the run it resumes."""

    doc: Document
    library: Library
    run: Run
    run_dir: Path
    earlier: resume.Earlier | None


def _main(argv: Sequence[str] | None, locks: list[int], embedding: Embedding) -> int:
    args = build_parser(embedding).parse_args(argv)
    progress = Progress()
    notes = Notes()
    try:
        start = _start(args, locks, embedding, progress, notes)
    except (SpecError, RuntimeError, OSError) as exc:
        sys.stderr.write(f"{embedding.prog}: {exc}\n")
        return 2
    run = start.run
    progress.run = run
    _announce(args, start, notes, progress)
    run.prepare()
    root = _execute(run)
    finished = time.time()
    if root.phase == ERROR and not root.started:
        root.started = run.created
    _write_reports(start, root, finished, embedding)
    progress.close()
    return _print_summary(args, start, root, finished, embedding)


def _start(
    args: argparse.Namespace,
    locks: list[int],
    embedding: Embedding,
    progress: Progress,
    notes: Notes,
) -> _Start:
    """The workflow checked before anything runs (a SpecError, RuntimeError or OSError
    names what cannot run), its run made and its run folder created or reopened and locked."""
    manifests = args.manifests or embedding.default_manifests()
    doc, library = spec.resolve_target(args.target, manifests)
    wf_spec = effective_spec(doc, library, notes)
    config_maps = ConfigMaps(configmaps.files_for(doc.source, manifests))
    parameters = workflow_parameters(wf_spec, _overrides(args.parameter), doc.source, config_maps)
    Wiring(
        doc,
        wf_spec,
        library,
        parameters,
        notes,
        secret_lookup(args.env_file),
        dict(args.entrypoint),
        config_maps=config_maps,
        image_paths=dict(args.image_path),
    ).check()
    if args.code is not None and not args.code.is_dir():
        raise SpecError(f"--code {args.code}: not a folder")
    earlier = None
    if args.resume:
        run_dir = resume.run_folder(args.resume, args.runs)
        earlier = resume.read(run_dir)
        resume.check_parameters(earlier, parameters)
        name = earlier.name
    else:
        name = spec.workflow_name(doc)
        run_dir = args.runs / name
    run = Run(
        doc,
        library,
        wf_spec,
        name,
        parameters,
        run_dir.resolve(),
        notes,
        Options(
            args.sandbox,
            args.verbose,
            args.env_file,
            args.code,
            manifests,
            dict(args.entrypoint),
            dict(args.image_path),
            dict(args.workdir),
            embedding,
            args.max_pods,
        ),
        progress,
    )
    if earlier is not None:
        locks.append(runs.reopen(run_dir))
        run.resumed = dict(earlier.succeeded)
    else:
        locks.append(runs.create(run_dir))
    return _Start(doc, library, run, run_dir, earlier)


def _announce(args: argparse.Namespace, start: _Start, notes: Notes, progress: Progress) -> None:
    """The run's header on stderr: what runs, where, what a resume keeps, what is ignored."""
    run, run_dir, earlier, doc = start.run, start.run_dir, start.earlier, start.doc
    sys.stderr.write(
        f"workflow {run.name} from {doc.kind}/{doc.name} ({doc.source})\n"
        f"  sandbox: {run.mode} ({run.mode_reason})\n  run folder: {run_dir}\n"
        f"  code: {run.code} (importable in every pod"
        f"{', read-only' if run.mode == 'bwrap' else ''})\n"
        f"  runs folder: {_pruned(args.runs, run_dir, args.keep)}\n"
        f"  pods: at most {run.slots.cap.pods} at once ({run.slots.cap.why}), the others Pending\n"
    )
    if earlier is not None:
        sys.stderr.write(
            f"  resuming: {earlier.name} ({earlier.phase or 'unknown phase'}); "
            f"{len(earlier.succeeded)} pod steps that succeeded are kept\n"
        )
        again = resume.reruns([doc, *start.library.documents()])
        if again:
            sys.stderr.write(
                f"  except steps of {', '.join(again)}: they run again and reuse only what the "
                "code of now would make (workers.dev/resume: rerun)\n"
            )
    if notes.ignored:
        progress(
            f"ignored locally (no meaning outside Kubernetes; each use is listed in run.json): "
            f"{report.ignored_summary(notes.ignored)}",
            None,
        )


def _execute(run: Run) -> Node:
    """The run to its end (an interrupt stops it, its root then Failed), settled, with
    nothing a pod started left behind; its root node."""
    name = run.name
    try:
        try:
            with reaper.terminate_interrupts():
                root = run.execute()
        except (KeyboardInterrupt, capacity.Exhausted) as exc:
            # Ctrl-C, SIGTERM, or a machine that cannot start a pod's process while none runs
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            run.stop(reason)
            root = next(iter(run.nodes.values()), None) or Node(name, name, name, "Steps", "", None)
            root.phase, root.message = "Failed", reason
        except BaseException:
            run.stop("internal error")  # a runner bug: its pods end with it all the same
            raise
        # No node is left Running in the report: daemons ended, stragglers of a stopped run
        # Failed.
        run.settle()
    finally:
        # nothing a pod started outlives the run, however it ends (each pod's leftovers went
        # with it already)
        reaper.end(None, f"{run.uid}/")
    return root


def _write_reports(start: _Start, root: Node, finished: float, embedding: Embedding) -> None:
    """run.json, metrics.prom and the embedding's timeline page, secrets masked."""
    run, run_dir = start.run, start.run_dir
    files = sorted({start.doc.source, *(d.source for d in start.library.documents())})
    record = report.workflow_record(run, root, finished, files)
    report.write_json(run_dir / "run.json", record, run.secret_values)
    (run_dir / "metrics.prom").write_text(
        redact(run.metrics.exposition(), tuple(run.secret_values))
    )
    if embedding.timeline is not None:
        page = embedding.timeline(record)
        (run_dir / "timeline.html").write_text(redact(page, tuple(run.secret_values)))


def _print_summary(
    args: argparse.Namespace, start: _Start, root: Node, finished: float, embedding: Embedding
) -> int:
    """The summary on stdout (nodes, the embedding's lines, artifacts, where the reports
    are, how to resume a failed run); the exit code: 0 succeeded, 1 failed."""
    run, run_dir = start.run, start.run_dir
    print(report.summary_text(run, root))
    for line in embedding.summary_lines(report.log_events(run)):
        print(redact(line, tuple(run.secret_values)))
    for line in report.artifact_lines(run):
        print(redact(line, tuple(run.secret_values)))
    print(f"run log:       {run_dir / 'run.json'}")
    if embedding.timeline is not None:
        print(f"timeline:      {run_dir / 'timeline.html'}")
    print(f"metrics:       {run_dir / 'metrics.prom'}")
    print(f"duration:      {finished - run.created:.2f}s")
    phase, _ = report.workflow_phase(run, root)
    if phase != "Succeeded":
        resume_line = f"resume:        {rerun_command(args, run_dir, embedding)}"
        print(redact(resume_line, tuple(run.secret_values)))
        print("               (keeps the steps that succeeded; runs the failed and the rest)")
    return 0 if phase == "Succeeded" else 1


def rerun_command(
    args: argparse.Namespace, run_dir: Path | None = None, embedding: Embedding | None = None
) -> str:
    """The command line that runs the same workflow with the same parameters again; with
    ``run_dir``, resuming that run (``--resume``)."""
    import shlex

    embedding = embedding or Embedding()
    argv = [*shlex.split(embedding.prog), str(args.target)]
    for item in args.parameter:
        argv += ["-p", item]
    if args.manifests:
        argv += ["--manifests", str(args.manifests)]
    if args.runs != embedding.runs_folder:
        argv += ["--runs", str(args.runs)]
    if args.sandbox != "auto":
        argv += ["--sandbox", args.sandbox]
    if args.env_file:
        argv += ["--env-file", str(args.env_file)]
    if args.code is not None:
        argv += ["--code", str(args.code)]
    for image, words in args.entrypoint:
        argv += ["--entrypoint", f"{image}={shlex.join(words)}"]
    for image, dirs in args.image_path:
        argv += ["--image-path", f"{image}={os.pathsep.join(dirs)}"]
    for image, folder in args.workdir:
        argv += ["--workdir", f"{image}={folder}"]
    if args.keep != KEEP_DEFAULT:
        argv += ["--keep", str(args.keep)]
    if args.max_pods:
        argv += ["--max-pods", str(args.max_pods)]
    if run_dir is not None:
        argv += ["--resume", str(run_dir)]
    return shlex.join(argv)


def _pruned(folder: Path, current: Path, keep: int) -> str:
    """Prune old finished runs; one line on what went and what is left."""
    result = runs.prune(folder, current, keep)
    parts = [f"kept {result.kept} earlier finished runs ({runs.human(result.kept_bytes)})"]
    if result.removed:
        parts.append(f"removed {result.removed} older ({runs.human(result.freed)})")
    if result.running:
        parts.append(f"{result.running} running")
    if result.unfinished:
        parts.append(
            f"{result.unfinished} without run.json ({runs.human(result.unfinished_bytes)}; "
            "never removed: rm -r them when no runner uses them)"
        )
    return f"{folder}: " + ", ".join(parts) + (f"; --keep {keep}" if keep else "; --keep 0: all")
