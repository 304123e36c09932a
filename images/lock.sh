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
#        LOCK_EXTRAS (default "all"): the extras to lock, comma-separated;
#        LOCK_OUTPUT (default images/requirements.txt): the file to write, from the repo root;
#        LOCK_TOOLS=1 also pins pip and setuptools (the dev locks install the package
#        editable without build isolation, so its build backend must be pinned too).
# bin/lock calls this for the image's lock and for requirements/test.txt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "lock.sh: need Python 3.11 to match the image" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

extras="${LOCK_EXTRAS:-all}"
output="${LOCK_OUTPUT:-images/requirements.txt}"
"$PYTHON" - "$root/pyproject.toml" "$extras" > "$work/requirements.in" <<'PY'
"""Print the runtime requirements of the given extras, self-references expanded."""
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

for extra in sys.argv[2].split(","):
    expand(extra.strip())
print("\n".join(out))
PY

"$PYTHON" -m venv "$work/venv"
# A clean config: host-local find-links/indexes must not leak into the lock.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL
if [[ ${LOCK_TOOLS:-} == 1 ]]; then
    build=$("$PYTHON" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' "$root/pyproject.toml")
    printf '%s\npip\n' "$build" >>"$work/requirements.in"
fi
# pip-tools itself pinned: a new pip-tools release must not change how the lock is written.
"$work/venv/bin/pip" install --quiet "pip-tools==7.7.0"
cd "$root"
CUSTOM_COMPILE_COMMAND="bin/lock" "$work/venv/bin/pip-compile" \
    --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links \
    --output-file "$output" "$@" "$work/requirements.in"
# pip-compile records the temp input path in "# via -r ..." comments; make the
# file reproducible across runs.
sed -i -E "s#-r $work/requirements.in#-r requirements.in (from pyproject.toml [$extras])#" "$output"
echo "wrote $output" >&2
