"""Regenerate the README's figure blocks from what runs printed, never by hand.

    bin/readme-figures                         # both blocks from the recorded results
    bin/readme-figures --reliability FILE      # first adopt a run's reliability-figures.json
    bin/readme-figures --check                 # exit 1 if the README differs (what CI runs)

The Reliability block (``<!-- reliability:begin -->`` .. ``<!-- reliability:end -->``) renders
the suite's table figures (counted from the tests' own tables) and the reference run's figures
(``tests/reliability-run.json``, written here from the ``reliability-figures.json`` a
``-m reliability`` run leaves in pytest's session folder and names in its terminal summary).
The Performance block (``<!-- performance:begin -->`` .. ``<!-- performance:end -->``) renders
``benchmarks/results.json`` with ``benchmarks/run.py``'s own ``render``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results.json"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]


def performance_block(results: dict) -> str:
    import run as bench  # benchmarks/run.py

    m = results["machine"]
    return (
        f"Measured on {results['date'][:10]} on this project's {m['nproc']}-core {m['cpu']} "
        f"machine (Python {m['python']}, size {results['size']}; `benchmarks/results.json`):\n\n"
        f"```\n{bench.render(results)}\n```"
    )


def reliability_block(run: dict) -> str:
    import reliability_figures as figures

    return figures.render(figures.table_figures(), run)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name}:begin/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def rendered(readme: str) -> str:
    import reliability_figures as figures

    text = replace_block(readme, "reliability", reliability_block(figures.reference_run()))
    return replace_block(text, "performance", performance_block(json.loads(RESULTS.read_text())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--reliability", type=Path, help="a run's reliability-figures.json to adopt")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if out of date")
    args = p.parse_args(argv)
    if args.reliability:
        import reliability_figures as figures

        run = json.loads(args.reliability.read_text())["run"]
        figures.REFERENCE_RUN.write_text(json.dumps(run, indent=2) + "\n")
    current = README.read_text()
    new = rendered(current)
    if args.check:
        if new != current:
            print("README.md figures are out of date: run bin/readme-figures", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
