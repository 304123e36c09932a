"""Template-level ``metrics.prometheus`` of a local run, as Argo's controller would export them.

Argo computes a template's metrics when its node completes, from the node's ``{{status}}``,
``{{duration}}``, ``{{exitCode}}``, ``{{retries}}``, inputs and outputs, and exports each as
``argo_workflows_<name>`` (the controller's Prometheus namespace, on 3.4 to 4.x; counters get
no ``_total`` added and no unit suffix). The runner does the same per node and writes the result
to ``metrics.prom`` in the run folder in the Prometheus text format, so a local run shows the
series a cluster's dashboard would chart.

What differs from a cluster: a value is computed once per node (and once per attempt that is
retried), not scraped over time; ``realtime`` gauges hold their final value; a metric whose
variables cannot be resolved is a run warning where Argo sets the workflow's ``MetricsError``
condition. Expression values (``{{=...}}``) are expr-lang (argo_local/expr/exprlang.py) and
``when`` is govaluate (argo_local/expr/govaluate.py), as in Argo.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from argo_local.expr import depends as expr
from argo_local.expr import govaluate, params

PREFIX = "argo_workflows_"
"""What Argo's exporter puts before a custom metric's name (WithNamespace("argo_workflows"))."""

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
"""A metric name, as the Prometheus exposition format allows one."""
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
"""A label name, as the exposition format allows one (``__`` names are Prometheus' own)."""
KINDS = ("gauge", "histogram", "counter")
_RESERVED_LABELS = {"histogram": ("le",)}
"""Labels the exposition of a kind writes itself: a template's own would clash with them."""


class MetricError(ValueError):
    """A metric that cannot be computed (bad name, unresolved variable, not a number)."""


@dataclass
class _Family:
    kind: str
    help: str
    label_keys: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    values: dict[tuple[str, ...], float] = field(default_factory=dict)
    # histogram series: per-bucket counts (cumulative at export), sum, count
    counts: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    sums: dict[tuple[str, ...], float] = field(default_factory=dict)


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MetricError(f"{where}: value {text!r} is not a number") from None
    if math.isnan(value):
        raise MetricError(f"{where}: value is NaN")
    return value


def render_value(text: str, scope: Mapping[str, str], where: str) -> str:
    """``text`` with ``{{=expression}}`` evaluated and ``{{name}}`` substituted from ``scope``."""
    try:
        return str(params.substitute(text, scope, where, strict=True))
    except params.ParamError as exc:
        raise MetricError(str(exc)) from None


class Registry:
    """The metric families of one run; thread-safe (pods finish on several threads)."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}
        self.lock = threading.Lock()

    def emit(self, metric: Mapping[str, Any], scope: Mapping[str, str], where: str) -> bool:
        """Compute one ``metrics.prometheus`` entry for a completed node; False if its ``when``
        is false. Raises :class:`MetricError` where Argo would report a metrics error."""
        name = render_value(str(metric.get("name", "")), scope, f"{where}.name")
        where = f"{where}[{name}]"
        if not _NAME.fullmatch(name):
            raise MetricError(f"{where}: {name!r} is not a valid metric name")
        if not metric.get("help"):
            raise MetricError(f"{where}: a metric needs a help string")
        kinds = [k for k in KINDS if k in metric]
        if len(kinds) != 1:
            raise MetricError(f"{where}: exactly one of gauge, histogram, counter is needed")
        kind = kinds[0]
        body = metric[kind] or {}
        # Argo substitutes the whole metric before it looks at `when`: a variable missing from
        # the node (an output a failed pod did not write, without a default) is an error even
        # when `when` would be false.
        text = render_value(str(body.get("value", "")), scope, f"{where}.{kind}")
        when = metric.get("when")
        if when:
            condition = render_value(str(when), scope, f"{where}.when")
            try:
                if not govaluate.should_execute(condition):
                    return False
            except expr.ExprError as exc:
                raise MetricError(f"{where}.when: {exc}") from None
        value = _number(text, where)
        labels = [
            (
                _label_key(label, kind, where),
                render_value(str(label.get("value", "")), scope, f"{where}.labels"),
            )
            for label in metric.get("labels") or []
        ]
        keys = tuple(k for k, _ in labels)
        if len(set(keys)) != len(keys):
            raise MetricError(f"{where}: a label key is given twice ({', '.join(keys)})")
        series = tuple(v for _, v in labels)
        buckets = tuple(sorted(float(b) for b in body.get("buckets") or ()))
        with self.lock:
            fam = self.families.get(name)
            if fam is None:
                self._check_unique(name, kind, where)
                fam = self.families[name] = _Family(kind, str(metric["help"]), keys, buckets)
            elif (fam.kind, fam.help, fam.label_keys, fam.buckets) != (
                kind,
                str(metric["help"]),
                keys,
                buckets,
            ):
                # Argo refuses a second descriptor for one name, too.
                raise MetricError(f"{where}: differs from the metric's first definition")
            if kind == "histogram":
                counts = fam.counts.setdefault(series, [0] * len(buckets))
                for i, bound in enumerate(buckets):
                    if value <= bound:
                        counts[i] += 1
                        break
                fam.sums[series] = fam.sums.get(series, 0.0) + value
                fam.values[series] = fam.values.get(series, 0) + 1
            elif kind == "counter":
                fam.values[series] = fam.values.get(series, 0.0) + value
            else:
                op = str(body.get("operation") or "Set")
                old = fam.values.get(series, 0.0)
                fam.values[series] = {"Add": old + value, "Sub": old - value}.get(op, value)
        return True

    def _check_unique(self, name: str, kind: str, where: str) -> None:
        """A new family's series names must not be another's: a histogram ``x`` writes
        ``x_bucket``, ``x_sum`` and ``x_count``, which a gauge ``x_sum`` would repeat."""
        mine = set(_series_names(name, kind))
        for other, fam in self.families.items():
            if mine & set(_series_names(other, fam.kind)):
                raise MetricError(f"{where}: its series would repeat those of metric {other!r}")

    def exposition(self) -> str:
        """The families in the Prometheus text format, names prefixed as Argo exports them."""
        lines: list[str] = []
        with self.lock:
            for name in sorted(self.families):
                fam = self.families[name]
                full = PREFIX + name
                lines.append(f"# HELP {full} {_escape_help(fam.help)}")
                lines.append(f"# TYPE {full} {fam.kind}")
                for series in sorted(fam.values):
                    pairs = list(zip(fam.label_keys, series, strict=True))
                    if fam.kind != "histogram":
                        lines.append(f"{full}{_labels(pairs)} {_fmt(fam.values[series])}")
                        continue
                    running = 0
                    for bound, n in zip(fam.buckets, fam.counts[series], strict=True):
                        running += n
                        le = _labels([*pairs, ("le", _fmt(bound))])
                        lines.append(f"{full}_bucket{le} {running}")
                    count = int(fam.values[series])
                    lines.append(f"{full}_bucket{_labels([*pairs, ('le', '+Inf')])} {count}")
                    lines.append(f"{full}_sum{_labels(pairs)} {_fmt(fam.sums[series])}")
                    lines.append(f"{full}_count{_labels(pairs)} {count}")
        return "".join(line + "\n" for line in lines)


def _series_names(name: str, kind: str) -> tuple[str, ...]:
    if kind == "histogram":
        return (f"{name}_bucket", f"{name}_sum", f"{name}_count", name)
    return (name,)


def _label_key(label: Any, kind: str, where: str) -> str:
    """A label's key, refused unless the exposition format takes it as one: a key holding
    ``"}`` and a newline would start a metric line of its own."""
    key = str(label.get("key", "")) if isinstance(label, Mapping) else ""
    if not _LABEL.fullmatch(key) or key.startswith("__"):
        raise MetricError(
            f"{where}: label key {key!r} is not a Prometheus label name "
            "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
        )
    if key in _RESERVED_LABELS.get(kind, ()):
        raise MetricError(f"{where}: label key {key!r} is reserved in a {kind}")
    return key


def _fmt(value: float) -> str:
    # 12 significant digits: sums of decimal values print as 64567.8, not 64567.80000000001
    return str(int(value)) if float(value).is_integer() else f"{float(value):.12g}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs) + "}"


def node_scope(
    base: Mapping[str, str],
    *,
    status: str,
    duration: float,
    exit_code: str | None,
    retries: int,
    outputs: Mapping[str, Any],
) -> dict[str, str]:
    """The variables Argo's ``prepareMetricScope`` offers a template's metrics."""
    scope = dict(base)
    scope["status"] = status
    scope["duration"] = f"{duration:f}"
    scope["retries"] = str(retries)
    if exit_code is not None:
        scope["exitCode"] = exit_code
    if outputs.get("result") is not None:
        scope["outputs.result"] = str(outputs["result"])
    for k, v in (outputs.get("parameters") or {}).items():
        scope[f"outputs.parameters.{k}"] = str(v)
    return scope
