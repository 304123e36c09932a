#!/usr/bin/env bash
# Build (and optionally push) the workers image with buildah, no daemon.
#
# Usage: images/build.sh [TAG]
# Env:
#   TAG / IMAGE_TAG   image name (default localhost/workers:<git short sha>)
#   BASE_IMAGE        base for both stages (default python:3.11-slim-bookworm;
#                     if the registry is unreachable, images/make-base.sh is
#                     run and localhost/workers-base:bookworm is used instead)
#   CONTEXT           build context (default: repo root)
#   PUSH=1            push TAG after building (buildah push, uses
#                     REGISTRY_AUTH_FILE / `buildah login` credentials)
#   PUSH_DEST         push destination (default docker://TAG)
#   BUILD_CA_BUNDLE   CA bundle for pip inside the build, for TLS-intercepting
#                     proxies; defaults to $PIP_CERT if that file exists
#   STORAGE_DRIVER    default vfs; BUILDAH_ISOLATION default chroot (both work
#                     as root without a daemon, user namespaces or overlayfs)
#   LAYERS=1          keep per-step layers as a build cache. Off by default:
#                     with vfs every step is a full copy of the rootfs, which
#                     made a cached rebuild slower (4m) than none at all (1m20)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONTEXT="${CONTEXT:-$(dirname "$here")}"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

rev="$(git -C "$CONTEXT" rev-parse HEAD 2>/dev/null || echo unknown)"
TAG="${1:-${TAG:-${IMAGE_TAG:-localhost/workers:${rev:0:12}}}}"
DEFAULT_BASE=python:3.11-slim-bookworm
LOCAL_BASE=localhost/workers-base:bookworm
BASE_IMAGE="${BASE_IMAGE:-}"

# buildah 1.28 ignores $STORAGE_DRIVER in the environment; pass it as a flag
# so every call agrees on one store.
buildah() { command buildah --storage-driver "$STORAGE_DRIVER" "$@"; }
log() { printf '[build] %s\n' "$*" >&2; }

registry_reachable() {
    # Any HTTP answer (typically 401) means the registry is there.
    curl -sS -o /dev/null -m 5 https://registry-1.docker.io/v2/ 2>/dev/null
}

if [[ -z "$BASE_IMAGE" ]]; then
    if buildah images --quiet "$DEFAULT_BASE" >/dev/null 2>&1 || registry_reachable; then
        BASE_IMAGE="$DEFAULT_BASE"
    else
        log "registry unreachable: using debootstrap base $LOCAL_BASE"
        "$here/make-base.sh" "$LOCAL_BASE" >/dev/null
        BASE_IMAGE="$LOCAL_BASE"
    fi
fi

args=(
    --isolation "$BUILDAH_ISOLATION"
    --layers="${LAYERS:-false}"
    --file "$CONTEXT/Dockerfile"
    --tag "$TAG"
    --build-arg "BASE_IMAGE=$BASE_IMAGE"
    --build-arg "REVISION=$rev"
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    --build-arg "VERSION=$(sed -nE 's/^__version__ = "([^"]+)".*/\1/p' "$CONTEXT/workers/__init__.py")"
)
# localhost/ images exist only in local storage; never try to pull them.
[[ "$BASE_IMAGE" == localhost/* ]] && args+=(--pull=false)

ca="${BUILD_CA_BUNDLE:-${PIP_CERT:-}}"
if [[ -n "$ca" && -f "$ca" ]]; then
    # Mounted for RUN steps only, so the proxy CA is not part of any layer.
    args+=(--volume "$ca:/etc/ssl/certs/build-ca-bundle.pem:ro"
           --build-arg PIP_CERT=/etc/ssl/certs/build-ca-bundle.pem)
fi

log "buildah bud base=$BASE_IMAGE tag=$TAG"
start=$SECONDS
buildah bud "${args[@]}" "$CONTEXT" >&2
log "built $TAG in $((SECONDS - start))s"

if [[ "${PUSH:-0}" == 1 ]]; then
    dest="${PUSH_DEST:-docker://$TAG}"
    log "pushing $TAG to $dest"
    buildah push "$TAG" "$dest" >&2
fi
echo "$TAG"
