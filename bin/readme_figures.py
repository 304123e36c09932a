"""Regenerate the docs' figure blocks from what runs printed, never by hand.

    bin/readme-figures                         # every block from the recorded results
    bin/readme-figures --reliability FILE      # first adopt a run's reliability-figures.json
    bin/readme-figures --columnar FILE         # first adopt a `run.py --only columnar --json FILE`
    bin/readme-figures --check                 # exit 1 if a page differs (what CI runs)

The blocks live in the docs site: Reliability in ``docs/reliability.md``, Performance in
``docs/performance.md``.

The Reliability block (``<!-- reliability:begin -->`` .. ``<!-- reliability:end -->``) renders
the suite's table figures (counted from the tests' own tables) and the reference run's figures
(``tests/reliability-run.json``, written here from the ``reliability-figures.json`` a
``-m reliability`` run leaves in pytest's session folder and names in its terminal summary).
The Performance block (``<!-- performance:begin -->`` .. ``<!-- performance:end -->``) renders
``benchmarks/results.json`` with ``benchmarks/run.py``'s own ``render``; the Columnar block
(``<!-- performance-columnar:begin -->`` .. ``end``, same page) renders
``benchmarks/results-columnar.json`` the same way: the JSON of a columnar-only run
(``benchmarks/run.py --only columnar --json FILE``), adopted by ``--columnar FILE``, so the
columnar rows can be measured anew without the whole benchmark's hour.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = {
    "reliability": ROOT / "docs" / "reliability.md",
    "performance": ROOT / "docs" / "performance.md",
    "performance-columnar": ROOT / "docs" / "performance.md",
}
"""Which page holds which block."""
RESULTS = ROOT / "benchmarks" / "results.json"
COLUMNAR_RESULTS = ROOT / "benchmarks" / "results-columnar.json"
COLUMNAR_STEPS = frozenset({"columnar", "part bytes"})
"""The steps of a columnar run's own rows (its merges of Parquet parts are step "merge")."""
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]


def performance_block(results: dict, source: str = "benchmarks/results.json") -> str:
    import run as bench  # benchmarks/run.py

    m = results["machine"]
    return (
        f"Measured on {results['date'][:10]} on this project's {m['nproc']}-core {m['cpu']} "
        f"machine (Python {m['python']}, size {results['size']}; `{source}`):\n\n"
        f"```\n{bench.render(results)}\n```"
    )


def columnar_block(results: dict) -> str:
    rows = ", ".join(f"{n:,}" for n in results["params"].get("columnar_rows", []))
    return (
        f"The columnar rows, measured by `benchmarks/run.py --only columnar` ({rows} rows, "
        f"{results['params']['runs']} runs a side). "
        + performance_block(results, "benchmarks/results-columnar.json")
    )


def adopt_columnar(src: Path, dest: Path = COLUMNAR_RESULTS) -> None:
    """Copy a columnar-only run's JSON to ``dest`` once it is one (exit 2 otherwise)."""
    try:
        results = json.loads(src.read_text())
        steps = {r["step"] for r in results["rows"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{src}: not a benchmarks/run.py JSON ({exc})") from None
    if not steps & COLUMNAR_STEPS or steps - COLUMNAR_STEPS - {"merge"}:
        raise SystemExit(
            f"{src}: not a columnar-only run (its steps: {', '.join(sorted(steps))}); "
            "make one with benchmarks/run.py --only columnar --json FILE"
        )
    try:
        columnar_block(results)
    except (KeyError, TypeError, ValueError) as exc:
        raise SystemExit(f"{src}: not a benchmarks/run.py JSON ({exc!r} missing)") from None
    dest.write_text(json.dumps(results, indent=2) + "\n")


def reliability_block(run: dict) -> str:
    import reliability_figures as figures

    return figures.render(figures.table_figures(), run)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{PAGES[name].name} has no <!-- {name}:begin/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def rendered(name: str, text: str) -> str:
    """``text`` (the page holding block ``name``) with that block rendered anew."""
    import reliability_figures as figures

    if name == "reliability":
        return replace_block(text, name, reliability_block(figures.reference_run()))
    if name == "performance-columnar":
        return replace_block(text, name, columnar_block(json.loads(COLUMNAR_RESULTS.read_text())))
    return replace_block(text, name, performance_block(json.loads(RESULTS.read_text())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--reliability", type=Path, help="a run's reliability-figures.json to adopt")
    p.add_argument("--columnar", type=Path, help="a `run.py --only columnar --json` file to adopt")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if out of date")
    args = p.parse_args(argv)
    if args.columnar:
        adopt_columnar(args.columnar)
    if args.reliability:
        import reliability_figures as figures

        run = json.loads(args.reliability.read_text())["run"]
        figures.REFERENCE_RUN.write_text(json.dumps(run, indent=2) + "\n")
    stale = []
    for name, page in PAGES.items():
        current = page.read_text()
        new = rendered(name, current)
        if new != current:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        print(f"figures out of date in {stale}: run bin/readme-figures", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
