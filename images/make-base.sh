#!/usr/bin/env bash
# Build a minimal Debian bookworm + python3 base image with debootstrap and
# import it into buildah's store, for hosts that cannot pull from a container
# registry. The result stands in for python:3.11-slim-bookworm as BASE_IMAGE.
#
# Usage: images/make-base.sh [TAG]     (default localhost/workers-base:bookworm)
# Env:
#   DEBIAN_MIRROR   apt mirror for debootstrap (default: first Debian URI in
#                   /etc/apt/sources.list*, else http://deb.debian.org/debian)
#   SECURITY_MIRROR security mirror (default: derived the same way)
#   CACHE_DIR       where the rootfs tarball is kept (~/.cache/workers-image)
#   FORCE=1         rebuild the rootfs even if cached and re-import the image
#   STORAGE_DRIVER  buildah storage driver (default vfs: works without
#                   overlay support in nested/unprivileged setups)
set -euo pipefail

TAG="${1:-${BASE_TAG:-localhost/workers-base:bookworm}}"
SUITE=bookworm
# python-is-python3 so `python` resolves like in the official python images;
# python3-venv because the Dockerfile's builder stage creates a venv.
PACKAGES="python3,python3-venv,python-is-python3,ca-certificates"
CACHE_DIR="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workers-image}"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
FORCE="${FORCE:-0}"

# buildah 1.28 ignores $STORAGE_DRIVER in the environment; pass it as a flag
# so every call agrees on one store.
buildah() { command buildah --storage-driver "$STORAGE_DRIVER" "$@"; }
log() { printf '[make-base] %s\n' "$*" >&2; }

# Reuse whatever mirror apt on this host already trusts: on locked-down
# builders that is often the only one reachable.
apt_uri() {
    local want="$1"
    grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//; s/[[:space:]].*$//' \
        | grep -E "/${want}/?\$" | head -n1
}
DEBIAN_MIRROR="${DEBIAN_MIRROR:-$(apt_uri debian || true)}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SECURITY_MIRROR:-$(apt_uri debian-security || true)}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

for tool in debootstrap buildah tar; do
    command -v "$tool" >/dev/null || { log "missing $tool (apt-get install $tool)"; exit 1; }
done
if [[ $(id -u) -ne 0 ]]; then
    log "debootstrap needs root"; exit 1
fi

if [[ "$FORCE" != 1 ]] && buildah images --quiet "$TAG" >/dev/null 2>&1; then
    log "$TAG already in buildah store (FORCE=1 to rebuild)"
    echo "$TAG"
    exit 0
fi

# The key covers everything that changes the rootfs, so editing the package
# list invalidates the cache instead of silently reusing a stale tarball.
key=$(printf '%s\n' "$SUITE" "$PACKAGES" "$DEBIAN_MIRROR" "$SECURITY_MIRROR" "v1" | sha256sum | cut -c1-12)
tarball="$CACHE_DIR/${SUITE}-rootfs-${key}.tar"
mkdir -p "$CACHE_DIR"

if [[ "$FORCE" == 1 || ! -s "$tarball" ]]; then
    rootfs=$(mktemp -d /var/tmp/workers-rootfs.XXXXXX)
    cleanup_rootfs() {
        umount "$rootfs/proc" 2>/dev/null || true
        rm -rf --one-file-system "$rootfs"
    }
    trap cleanup_rootfs EXIT
    log "debootstrap $SUITE from $DEBIAN_MIRROR into $rootfs"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >&2

    cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
    # debootstrap only sees the release suite; pull point-release and
    # security fixes so the base is not months behind.
    mount -t proc proc "$rootfs/proc"
    chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -q && apt-get upgrade -y -q && apt-get clean' >&2
    umount "$rootfs/proc"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache
    # The runtime provides these; baked-in host copies would leak host config.
    : > "$rootfs/etc/resolv.conf"
    : > "$rootfs/etc/hostname"

    log "writing $tarball"
    # /dev, /proc, /sys are populated by the container runtime; device nodes
    # in a layer only cause trouble with rootless/vfs storage.
    tar --numeric-owner --xattrs -C "$rootfs" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cpf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    cleanup_rootfs
    trap - EXIT
else
    log "using cached $tarball"
fi

log "importing into buildah as $TAG"
ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")
tar --numeric-owner --xattrs -C "$mnt" -xpf "$tarball"
buildah umount "$ctr" >/dev/null
buildah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --cmd '["python3"]' \
    --label org.opencontainers.image.title="workers-base" \
    --label org.opencontainers.image.description="debootstrap $SUITE minbase + python3" \
    --label org.opencontainers.image.base.name="debian:$SUITE (debootstrap)" \
    "$ctr"
buildah commit --quiet --rm "$ctr" "$TAG" >/dev/null
trap - EXIT
log "done: $TAG"
echo "$TAG"
