"""``workers timeline``: where a workflow's time went, as one HTML page.

:mod:`.model` (tasks, segments, loops from a Workflow object), :mod:`.records` (the shards'
commit records), :mod:`.html` (the page) and :mod:`.command` (``workers timeline``).
"""

from workers.timeline.command import EPILOG, build_parser, main
from workers.timeline.html import render_workflow
from workers.timeline.model import fmt_s, load, parameters, parse_time, percentile, short_name

__all__ = [
    "EPILOG",
    "build_parser",
    "fmt_s",
    "load",
    "main",
    "parameters",
    "parse_time",
    "percentile",
    "render_workflow",
    "short_name",
]
