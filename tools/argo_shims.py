"""Stand-ins for the programs of two images Argo's examples run, so they run on this machine.

``argosay`` is the ENTRYPOINT of ``argoproj/argosay:v2`` (Argo's test/e2e/images/argosay/v2);
written here in Python from the commands that image documents, not from its script:

    argosay                        prints "hello argo"
    argosay echo [TEXT [FILE]]     prints TEXT ("hello argo" without it); with FILE, writes
                                   TEXT and a newline to FILE instead, creating its folder
    argosay cat FILE               prints FILE
    argosay assert_contains FILE TEXT
                                   prints FILE's lines holding TEXT; exit 1 when none does
    argosay exit [CODE]            exits with CODE (0 without it)
    argosay sleep DURATION         sleeps: seconds, or a number with s, m, h or d
    argosay sh FILE                runs FILE with sh

Anything else exits 1, as the image does. ``cowsay TEXT...`` (``docker/whalesay`` and
``argoproj/argosay:v1``) prints TEXT in a speech bubble above a small cow.

``python argo_shims.py --install DIR`` writes ``DIR/argosay`` and ``DIR/cowsay``: shell
wrappers that run this file with this interpreter (``-I``: a pod's PYTHONPATH must not
change what the shim imports).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HELLO = "hello argo"
PROGRAMS = ("argosay", "cowsay")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def argosay(args: Sequence[str]) -> int:
    if not args:
        print(HELLO)
        return 0
    command, rest = args[0], list(args[1:])
    if command == "echo":
        return _echo(rest)
    if command == "cat" and len(rest) >= 1:
        sys.stdout.write(Path(rest[0]).read_text())
        return 0
    if command == "assert_contains" and len(rest) >= 2:
        return _assert_contains(Path(rest[0]), rest[1])
    if command == "exit":
        return int(rest[0]) if rest else 0
    if command == "sleep" and rest:
        time.sleep(seconds(rest[0]))
        return 0
    if command == "sh" and rest:
        return subprocess.call(["sh", rest[0]])
    return 1


def _echo(rest: list[str]) -> int:
    if not rest:
        print(HELLO)
    elif len(rest) == 1:
        print(rest[0])
    elif len(rest) == 2:
        target = Path(rest[1])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rest[0] + "\n")
    else:
        return 1
    return 0


def _assert_contains(path: Path, text: str) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        sys.stderr.write(f"argosay assert_contains: {exc}\n")
        return 2
    found = [line for line in lines if text in line]
    for line in found:
        print(line)
    return 0 if found else 1


def seconds(text: str) -> float:
    """A sleep duration: ``5``, ``0.5``, ``10s``, ``2m``, ``1h`` or ``1d``."""
    unit = _UNITS.get(text[-1:])
    number = text[:-1] if unit is not None else text
    return float(number) * (unit or 1.0)


def cowsay(args: Sequence[str]) -> int:
    text = " ".join(args) if args else sys.stdin.read().strip()
    width = len(text)
    print(" " + "_" * (width + 2))
    print(f"< {text} >")
    print(" " + "-" * (width + 2))
    print("        \\   ^__^")
    print("         \\  (oo)\\_______")
    print("            (__)\\       )\\/\\")
    print("                ||----w |")
    print("                ||     ||")
    return 0


def install(folder: Path) -> Path:
    """Write the ``argosay`` and ``cowsay`` wrappers into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve()
    for name in PROGRAMS:
        wrapper = folder / name
        wrapper.write_text(
            f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -I {shlex.quote(str(here))} {name} "$@"\n'
        )
        wrapper.chmod(0o755)
    return folder


def main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "--install":
        print(install(Path(argv[1])))
        return 0
    if not argv or argv[0] not in PROGRAMS:
        sys.stderr.write(f"usage: argo_shims.py {{{','.join(PROGRAMS)}}} ARGS... | --install DIR\n")
        return 2
    try:
        return argosay(argv[1:]) if argv[0] == "argosay" else cowsay(argv[1:])
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"{argv[0]}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
