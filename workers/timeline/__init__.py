"""``workers timeline``: where a workflow's time went, as one HTML page (see :mod:`.html`)."""

from workers.timeline.html import (
    EPILOG,
    build_parser,
    fmt_s,
    load,
    main,
    parameters,
    parse_time,
    percentile,
    render_workflow,
    short_name,
)

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
