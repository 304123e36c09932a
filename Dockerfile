# Image for the `workers` steps. One image serves every step: the Argo
# template picks the step with `command: [python, -m, workers.<step>]`, so no
# ENTRYPOINT is baked in.
#
# BASE_IMAGE must be a Debian-family image with python3 (3.11+) and
# python3 -m venv: python:3.11-slim-bookworm from a registry, or
# localhost/workers-base:bookworm made by images/make-base.sh when no registry
# is reachable. Both stages use the same base because the venv's python is a
# symlink to the base interpreter.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
# Optional CA bundle path for TLS-intercepting egress proxies; build.sh mounts
# the file with --volume so it never lands in a layer. Builder-only ARG.
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
# Dependencies first, in their own layer, so code edits don't re-download.
# --only-binary keeps compilers out of the builder too: every pin has a
# manylinux wheel, and a missing one should fail loudly rather than compile.
COPY images/requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --require-hashes --only-binary=:all: --no-deps \
        -r /tmp/requirements.txt
COPY . /src
# --no-deps: dependencies are exactly the hashed set above. Build isolation
# fetches setuptools>=68 because the venv's bundled one may be older.
# The distribution also holds argo_local, the local runner behind `workers run`: pods
# run `python -m workers.<step>` and never import it, so the image leaves it out.
RUN /opt/venv/bin/pip install --no-deps /src \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes setuptools pip \
 && rm -r /opt/venv/lib/python3*/site-packages/argo_local \
 && /opt/venv/bin/python -c "import workers"

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG UID=10001
ARG GID=10001
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=
LABEL org.opencontainers.image.title="workers" \
      org.opencontainers.image.description="Dynamic fan-out/fan-in steps for Argo Workflows: python -m workers.produce|split|shard|merge" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# A passwd entry keeps tools that look up the user (getpass, ssh, git) happy;
# the numeric USER below is what Kubernetes runAsNonRoot checks.
RUN groupadd --gid "${GID}" workers \
 && useradd --uid "${UID}" --gid "${GID}" --home-dir /work --no-create-home \
        --shell /usr/sbin/nologin workers \
 && install -d -o "${UID}" -g "${GID}" -m 0750 /work

COPY --from=builder /opt/venv /opt/venv

# HOME and caches point at writable places so the image runs with
# readOnlyRootFilesystem when /tmp (and /work, for the default SQLite file)
# are emptyDirs. Bytecode was compiled at build time; don't write more.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/work \
    XDG_CACHE_HOME=/tmp/.cache \
    LANG=C.UTF-8

WORKDIR /work
USER ${UID}:${GID}
ENTRYPOINT []
CMD ["python", "-m", "workers", "--help"]
