"""The docs' reference, generated from the code at build time (an mkdocs hook), never typed.

A page holds a marker line ``<!-- reference:NAME -->``; :func:`on_page_markdown` replaces it with
what :data:`RENDERERS` makes of the code: the CLI from each command's argparse parser, exit codes
from ``workers/failures.py`` and ``workers/exitcodes.py``, column types from ``workers/values.py``,
the templates' parameters and metrics from ``manifests/``' YAML and the alerts from
``manifests/observability/``. ``tests/test_docs.py`` checks every marker names a renderer and the
tests of each source compare these renderings with the code they render.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
TEMPLATES = MANIFESTS / "base" / "templates"
OBSERVABILITY = MANIFESTS / "observability"
MARKER = re.compile(r"^<!-- reference:([a-z0-9_.:-]+) -->$", re.M)

STEPS = ("produce", "split", "shard", "merge")
COMMANDS = {
    "produce": "workers.produce",
    "split": "workers.split",
    "shard": "workers.shard",
    "merge": "workers.merge",
    "pipeline": "workers.pipeline",
    "timeline": "workers.timeline",
    "cleanup": "workers.cleanup",
    "check": "workers.check",
    # The local runner's parser (argo_local, the runner's own package).
    "run": "argo_local.cli",
}


def cell(text: object) -> str:
    """A markdown table cell: one line, pipes escaped outside code spans (inside them the
    tables extension already keeps a pipe, and would print the backslash)."""
    parts = " ".join(str(text).split()).split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def table(head: tuple[str, ...], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------- the CLI


def parser_of(command: str) -> argparse.ArgumentParser:
    """The argparse parser of a ``workers`` command (each module's ``build_parser()``)."""
    modules = COMMANDS[command]
    for name in (modules,) if isinstance(modules, str) else modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.build_parser()  # type: ignore[no-any-return]
    raise ImportError(f"no parser for workers {command}: tried {modules}")


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`" + (" ..." if action.nargs in ("*", "+") else "")
    metavar = ""
    if action.nargs != 0:
        metavar = " " + (action.metavar if isinstance(action.metavar, str) else action.dest.upper())
        if action.choices and not action.metavar:
            metavar = " " + "|".join(str(c) for c in action.choices)
    return ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings)


def cli(command: str) -> str:
    """One command's usage, options (flag and help, defaults expanded) and its epilog."""
    p = parser_of(command)
    formatter = p._get_formatter()
    rows = []
    for action in p._actions:
        if action.help == argparse.SUPPRESS:
            continue
        rows.append((_flags(action), formatter._expand_help(action) if action.help else ""))
    usage = " ".join(p.format_usage().split()).removeprefix("usage: ")
    parts = [f"```text\n{usage}\n```"]
    if p.description:
        parts.append(p.description.strip().split("\n\n")[0])
    parts.append(table(("flag", "meaning"), rows))
    if p.epilog:
        parts.append("```text\n" + p.epilog.strip("\n") + "\n```")
    return "\n\n".join(parts)


def workers_usage() -> str:
    from workers.__main__ import USAGE

    return "```text\n" + USAGE.strip("\n") + "\n```"


# ------------------------------------------------------------------------------ exit codes


def exit_code_rows() -> list[tuple[str, str]]:
    """Every exit code of ``workers/exitcodes.py`` with its docstring's first sentence."""
    import ast

    from workers import exitcodes

    tree = ast.parse(Path(exitcodes.__file__).read_text())
    docs: dict[str, str] = {}
    body = tree.body
    for node, after in itertools.pairwise(body):
        if isinstance(node, ast.Assign) and isinstance(after, ast.Expr):
            name = node.targets[0].id  # type: ignore[attr-defined]
            docs[name] = str(after.value.value)  # type: ignore[attr-defined]
    return [
        (str(code), f"`{name}`: " + " ".join(docs.get(name, "").split()))
        for name, code in sorted(exitcodes.ALL.items(), key=lambda kv: kv[1])
    ]


def exit_codes() -> str:
    return table(("code", "meaning"), exit_code_rows())


def cause_rows() -> list[tuple[str, str, str, str]]:
    from workers import failures

    return [
        (str(c.code), f"`{c.name}`", c.covers, c.fix)
        for c in sorted(failures.CAUSES.values(), key=lambda c: c.code)
    ]


def causes() -> str:
    return table(("code", "cause", "covers", "what to do"), cause_rows())


# ---------------------------------------------------------------------------- column types


def column_types() -> str:
    from workers import values

    return table(("PostgreSQL", "SQLite (declared type)", "JSON"), list(values.TYPE_TABLE))


# --------------------------------------------------------------------------- the templates


def template_docs() -> Iterator[dict[str, Any]]:
    for path in sorted(TEMPLATES.glob("*.yaml")):
        yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


def _description(doc: dict[str, Any]) -> str:
    notes = doc.get("metadata", {}).get("annotations", {})
    return " ".join(str(notes.get("workflows.argoproj.io/description", "")).split())


def _param_rows(params: list[dict[str, Any]], key: str) -> list[tuple[str, str, str]]:
    rows = []
    for p in params:
        default = p.get(key, "")
        enum = p.get("enum")
        meaning = p.get("description", "")
        if enum:
            meaning = (meaning + "; " if meaning else "") + "one of " + ", ".join(enum)
        rows.append((f"`{p['name']}`", f"`{default}`" if default != "" else "(empty)", meaning))
    return rows


def template_parameters() -> str:
    """Per WorkflowTemplate: its description, workflow parameters and each template's inputs."""
    out = []
    for doc in template_docs():
        name = doc["metadata"]["name"]
        out.append(f"### `{name}`\n\n{_description(doc)}")
        spec = doc["spec"]
        workflow_params = spec.get("arguments", {}).get("parameters", [])
        if workflow_params:
            out.append(
                "Workflow parameters (`-p NAME=VALUE`):\n\n"
                + table(("parameter", "default", "meaning"), _param_rows(workflow_params, "value"))
            )
        for t in spec.get("templates", []):
            inputs = t.get("inputs", {}).get("parameters", [])
            if inputs and (t.get("container") or t.get("script")):
                out.append(
                    f"Template `{t['name']}` (`templateRef: {{name: {name}, template: "
                    f"{t['name']}}}`), inputs:\n\n"
                    + table(("input", "default", "meaning"), _param_rows(inputs, "default"))
                )
            outputs = t.get("outputs", {}).get("parameters", [])
            if outputs and (t.get("container") or t.get("script")):
                out.append(
                    f"Template `{t['name']}` outputs:\n\n"
                    + table(
                        ("output", "meaning"),
                        [(f"`{o['name']}`", o.get("description", "")) for o in outputs],
                    )
                )
    return "\n\n".join(out)


# ------------------------------------------------------------------------------- metrics


def metric_rows() -> list[tuple[str, str, str, str, str]]:
    """Each metric the templates declare, as the controller exports it, with its panels."""
    panels: dict[str, list[str]] = {}
    dashboard = json.loads((OBSERVABILITY / "dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in re.findall(
                r"argo_workflows_(\w+?)(?:_bucket|_sum|_count)?\b", target["expr"]
            ):
                if panel["title"] not in panels.setdefault(name, []):
                    panels[name].append(panel["title"])
    seen: dict[str, tuple[str, str, list[str], str]] = {}
    for doc in template_docs():
        for t in doc["spec"].get("templates", []):
            for m in t.get("metrics", {}).get("prometheus", []):
                kind = next(k for k in ("counter", "gauge", "histogram") if k in m)
                labels = ", ".join(f"`{label['key']}`" for label in m.get("labels", []))
                steps = seen.get(m["name"], (kind, labels, [], m.get("help", "")))[2]
                steps.append(t["name"])
                seen[m["name"]] = (kind, labels, steps, m.get("help", ""))
    return [
        (
            f"`argo_workflows_{name}`",
            kind + (f"; {labels}" if labels else ""),
            help_,
            ", ".join(dict.fromkeys(steps)),
            ", ".join(panels.get(name, [])),
        )
        for name, (kind, labels, steps, help_) in seen.items()
    ]


def metrics() -> str:
    return table(
        (
            "metric (as scraped)",
            "type; labels",
            "what it measures",
            "templates",
            "dashboard panels",
        ),
        metric_rows(),
    )


def alerts() -> str:
    doc = yaml.safe_load((OBSERVABILITY / "prometheusrule.yaml").read_text())
    rows = [
        (f"`{r['alert']}`", r.get("for", ""), r["annotations"].get("description", ""))
        for g in doc["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    return table(("alert", "for", "what it means and what to do"), rows)


# ------------------------------------------------------------------------------- the hook


def renderers() -> dict[str, Callable[[], str]]:
    found: dict[str, Callable[[], str]] = {
        "workers": workers_usage,
        "exit-codes": exit_codes,
        "causes": causes,
        "column-types": column_types,
        "template-parameters": template_parameters,
        "metrics": metrics,
        "alerts": alerts,
    }
    for command in COMMANDS:
        found[f"cli:{command}"] = lambda command=command: cli(command)  # type: ignore[misc]
    return found


def render(markdown: str) -> str:
    """``markdown`` with every reference marker replaced by what it names."""
    known = renderers()

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in known:
            raise KeyError(f"unknown reference marker {m.group(0)} (known: {sorted(known)})")
        return known[m.group(1)]()

    return MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs hook: expand the page's reference markers."""
    return render(markdown)
