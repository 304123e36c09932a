#!/usr/bin/env bash
# Regenerate images/requirements.txt: exact pins with sha256 hashes for the
# runtime dependencies plus the [all] extras, resolved by pip-compile
# (pip-tools) against PyPI for CPython 3.11 (the image's interpreter).
#
# The input is derived from pyproject.toml rather than compiling pyproject.toml
# directly: `all = ["workers[...]"]` is self-referential, and pip-compile then
# emits an unhashable `workers @ file://...` line that breaks --require-hashes.
#
# Usage: images/lock.sh [--upgrade]   (extra args go to pip-compile)
# Env:   PYTHON (default python3.11 or python3), must be 3.11.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "lock.sh: need Python 3.11 to match the image" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$PYTHON" - "$root/pyproject.toml" > "$work/requirements.in" <<'PY'
"""Print the runtime requirements of the [all] extra, self-references expanded."""
import re
import sys
import tomllib

project = tomllib.load(open(sys.argv[1], "rb"))["project"]
name = project["name"]
extras = project.get("optional-dependencies", {})
out, seen = list(project.get("dependencies", [])), set()

def expand(extra: str) -> None:
    if extra in seen:
        return
    seen.add(extra)
    for req in extras[extra]:
        m = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", req.strip())
        if m:
            for sub in m.group(1).split(","):
                expand(sub.strip())
        else:
            out.append(req)

expand("all")
print("\n".join(out))
PY

"$PYTHON" -m venv "$work/venv"
# A clean config: host-local find-links/indexes must not leak into the lock.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL
"$work/venv/bin/pip" install --quiet "pip-tools>=7.4"
cd "$root"
CUSTOM_COMPILE_COMMAND="images/lock.sh" "$work/venv/bin/pip-compile" \
    --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links \
    --output-file images/requirements.txt "$@" "$work/requirements.in"
# pip-compile records the temp input path in "# via -r ..." comments; make the
# file reproducible across runs.
sed -i -E "s#-r $work/requirements.in#-r requirements.in (from pyproject.toml [all])#" images/requirements.txt
echo "wrote images/requirements.txt" >&2
