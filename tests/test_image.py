"""Build the container image with buildah and run the steps inside it.

No Docker daemon or Kubernetes is assumed: the image is built with
``images/build.sh`` (buildah, chroot isolation, vfs storage; a debootstrap base
from ``images/make-base.sh`` when no registry is reachable) and commands run
either with ``buildah run --user`` or, to mimic a pod with
``readOnlyRootFilesystem`` and emptyDir volumes, by chrooting into the mounted
image with the root bind-mounted read-only.

The image's user is the Dockerfile's ``ARG UID``/``ARG GID``; manifest tests
should take it from :data:`IMAGE_UID` / :func:`dockerfile_arg` rather than
repeating the number.

Skipped when buildah is missing or we are not root; with ``CI=true`` those
become failures so a CI image that lost buildah cannot pass silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import unavailable

import workers

try:  # tests/ may or may not become a package on other branches
    from tests import orders_example as orders
except ImportError:
    import orders_example as orders  # type: ignore[no-redef]

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
BUILD_SH = ROOT / "images" / "build.sh"
STORAGE_DRIVER = os.environ.get("STORAGE_DRIVER", "vfs")
BUILD_TIMEOUT = 1200
RUN_TIMEOUT = 120


def dockerfile_arg(name: str, dockerfile: Path = DOCKERFILE) -> str:
    """Default of ``ARG name=value`` in the final stage of the Dockerfile."""
    values = re.findall(rf"^ARG\s+{re.escape(name)}=(\S+)\s*$", dockerfile.read_text(), re.M)
    if not values:
        raise LookupError(f"no ARG {name}=... in {dockerfile}")
    return values[-1]


IMAGE_UID = int(dockerfile_arg("UID"))
IMAGE_GID = int(dockerfile_arg("GID"))
USER = f"{IMAGE_UID}:{IMAGE_GID}"


def buildah(*args: str, timeout: float = RUN_TIMEOUT, check: bool = True) -> str:
    # The flag, not the environment: buildah 1.28 ignores $STORAGE_DRIVER.
    proc = subprocess.run(
        ["buildah", "--storage-driver", STORAGE_DRIVER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc.stdout


def test_dockerfile_user_is_numeric_uid_arg() -> None:
    """runAsNonRoot can only verify a numeric USER, and it must be the ARG."""
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)\s*$", text, re.M)
    assert users == ["${UID}:${GID}"] or users == [USER], users
    assert IMAGE_UID == 10001 and IMAGE_GID == 10001
    baked = re.search(r"^ENTRYPOINT\s+(?!\[\s*\]\s*$)", text, re.M)
    assert not baked, "the Argo template picks the step; no ENTRYPOINT may bake one in"


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if shutil.which("buildah") is None:
        unavailable("buildah is not installed (apt-get install buildah)")
    if os.geteuid() != 0:
        unavailable("buildah chroot builds here need root")
    tag = f"localhost/workers:pytest-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "STORAGE_DRIVER": STORAGE_DRIVER, "CONTEXT": str(ROOT)}
    proc = subprocess.run(
        [str(BUILD_SH), tag], env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT
    )
    assert proc.returncode == 0, f"build failed:\n{proc.stderr[-6000:]}"
    try:
        yield tag
    finally:
        # Only our tag: the base image stays cached for the next run.
        buildah("rmi", "--force", tag, check=False)


@pytest.fixture(scope="module")
def config(image: str) -> dict:
    return json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[str]:
    # One working container for the module: under vfs each `buildah from`
    # copies the whole image (~15 s). Only the buildah-run pipeline writes to
    # its rootfs; the read-only runs write to their own host folders.
    name = f"workers-test-{uuid.uuid4().hex[:8]}"
    buildah("from", "--pull=false", "--name", name, image)
    try:
        yield name
    finally:
        buildah("rm", name, check=False)


class BuildahRun:
    """Commands via ``buildah run --isolation chroot --user UID:GID``."""

    def __init__(self, container: str) -> None:
        self.container = container

    def __call__(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "buildah",
                "--storage-driver",
                STORAGE_DRIVER,
                "run",
                "--isolation",
                "chroot",
                "--user",
                USER,
                self.container,
                "--",
                *cmd,
            ],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )

    def read(self, path: str) -> str:
        proc = self("cat", path)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


class ReadOnlyRun:
    """Commands in the image as a pod would run them with readOnlyRootFilesystem.

    The mounted image is bind-mounted read-only in a private mount namespace;
    host folders owned by the image user stand in for emptyDirs at /tmp and
    /work, which also lets the test read outputs afterwards.
    """

    def __init__(self, container: str, config: dict, base: Path) -> None:
        self.rootfs = buildah("mount", container).strip()
        self.env = list(config.get("Env") or [])
        self.workdir = config.get("WorkingDir") or "/"
        self.mountpoint = base / "root"
        self.volumes = {"/tmp": base / "tmp", "/work": base / "work"}
        self.mountpoint.mkdir()
        for host in self.volumes.values():
            host.mkdir()
            os.chown(host, IMAGE_UID, IMAGE_GID)

    _SETUP = r"""
root=$1 user=$2 tmp=$3 work=$4; shift 4
mount --bind "$ROOTFS" "$root"
mount -o remount,bind,ro "$root"
mount --bind "$tmp" "$root/tmp"
mount --bind "$work" "$root/work"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
cd /
exec chroot --userspec="$user" "$root" "$@"
"""

    def __call__(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        inner: Sequence[str] = [
            "/usr/bin/env",
            "-i",
            *self.env,
            "/bin/sh",
            "-c",
            'cd "$0" && exec "$@"',
            self.workdir,
            *cmd,
        ]
        return subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--fork",
                "--",
                "sh",
                "-euc",
                self._SETUP,
                "sh",
                str(self.mountpoint),
                USER,
                str(self.volumes["/tmp"]),
                str(self.volumes["/work"]),
                *inner,
            ],
            env={**os.environ, "ROOTFS": self.rootfs},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )

    def read(self, path: str) -> str:
        for prefix, host in self.volumes.items():
            if path.startswith(prefix + "/"):
                return (host / path[len(prefix) + 1 :]).read_text()
        raise ValueError(f"{path} is not on a writable volume")


def test_image_config(config: dict) -> None:
    assert config["User"] == USER
    assert not config.get("Entrypoint")
    assert config["WorkingDir"] == "/work"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    labels = config.get("Labels") or {}
    for key in ("title", "version", "revision", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    # images/build.sh reads the one version source
    assert labels["org.opencontainers.image.version"] == workers.__version__


def test_shard_help_as_non_root(container: str) -> None:
    proc = BuildahRun(container)("python", "-m", "workers.shard", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--shard" in proc.stdout


def test_default_cmd_is_harmless(container: str, config: dict) -> None:
    proc = BuildahRun(container)(*config["Cmd"])
    assert proc.returncode == 0, proc.stderr


def test_runs_as_image_uid(container: str) -> None:
    run = BuildahRun(container)
    assert run("id", "-u").stdout.strip() == str(IMAGE_UID)
    assert run("id", "-g").stdout.strip() == str(IMAGE_GID)


def test_production_extras_importable_and_no_compilers(container: str) -> None:
    run = BuildahRun(container)
    proc = run(
        "python",
        "-c",
        "import workers, sqlalchemy, psycopg, s3fs, gcsfs, orjson, pyarrow, adbc_driver_postgresql, polars",
    )
    assert proc.returncode == 0, proc.stderr
    # Pods run the steps only: the local runner (argo_local) is not in the image, and
    # `workers run` there says so in one line.
    proc = run("python", "-c", "import argo_local")
    assert proc.returncode == 1 and "No module named 'argo_local'" in proc.stderr
    proc = run("python", "-m", "workers", "run", "workers-pipeline")
    assert (proc.returncode, proc.stdout) == (2, "")
    # (buildah adds its own lines about the exit status after the command's one line)
    assert proc.stderr.startswith(
        "python -m workers run: the local runner (package argo_local) is not installed here;"
    )
    assert "Traceback" not in proc.stderr
    proc = run("sh", "-c", "command -v gcc || command -v cc || command -v make || true")
    assert proc.stdout.strip() == "", f"build tools leaked into the image: {proc.stdout}"


def test_read_only_root_filesystem(container: str, config: dict, tmp_path: Path) -> None:
    run = ReadOnlyRun(container, config, tmp_path)
    proc = run("sh", "-c", "touch /opt/venv/x || touch /etc/x || echo read-only")
    assert proc.stdout.strip() == "read-only", proc.stdout + proc.stderr
    proc = run("python", "-m", "workers.shard", "--help")
    assert proc.returncode == 0, proc.stderr


def run_pipeline(
    run: BuildahRun | ReadOnlyRun,
    run_id: str,
    produce: Sequence[str],
    plan: Sequence[str] = (),
    rows_per_shard: int = 30,
) -> tuple[list[dict], list]:
    """produce -> split -> shard (each item) -> merge; the shard list and the merged rows.

    ``produce`` are produce's own flags, ``plan`` the ones split and every shard share
    (a processor the plan pins)."""

    def step(*argv: str) -> subprocess.CompletedProcess[str]:
        proc = run("python", "-m", *argv)
        assert proc.returncode == 0, f"{argv} -> {proc.returncode}\n{proc.stderr}"
        return proc

    store = f"/tmp/store-{run_id}"
    step("workers.produce", *produce, "--run-id", run_id, "--count-file", "/tmp/count")
    step(
        "workers.split",
        "--count-file",
        "/tmp/count",
        "--rows-per-shard",
        str(rows_per_shard),
        "--run-id",
        run_id,
        "--store",
        store,
        "--output-file",
        "/tmp/shards.json",
        *plan,
    )
    shards = json.loads(run.read("/tmp/shards.json"))
    assert isinstance(shards, list)
    for item in shards:
        step(
            "workers.shard",
            "--shard",
            json.dumps(item),
            "--run-id",
            run_id,
            "--store",
            store,
            *plan,
        )
    step("workers.merge", "--store", store, "--output", f"{store}/merged.json")
    merged = json.loads(run.read(f"{store}/merged.json"))
    assert isinstance(merged, list)
    return shards, merged


@pytest.mark.parametrize("runner", ["buildah-run", "read-only-root"])
def test_pipeline_in_image(runner: str, container: str, config: dict, tmp_path: Path) -> None:
    """produce -> split -> shard (each item) -> merge on embedded defaults (SQLite in /work)."""
    run: BuildahRun | ReadOnlyRun
    if runner == "buildah-run":
        run = BuildahRun(container)
    else:
        run = ReadOnlyRun(container, config, tmp_path)
    shards, merged = run_pipeline(run, "t1", ["--rows", "100"])
    assert len(shards) == 4
    assert len(merged) == 100


# ------------------------------------------------------------------ a user's image FROM ours


@pytest.fixture(scope="module")
def orders_image(image: str) -> Iterator[str]:
    """examples/orders/Dockerfile built on the image under test, as a user builds it."""
    tag = f"localhost/orders:pytest-{uuid.uuid4().hex[:8]}"
    buildah(
        "bud",
        "--isolation",
        "chroot",
        "--layers=false",
        "--pull=false",
        "--build-arg",
        f"WORKERS_IMAGE={image}",
        "--tag",
        tag,
        str(orders.EXAMPLE),
        timeout=BUILD_TIMEOUT,
    )
    try:
        yield tag
    finally:
        buildah("rmi", "--force", tag, check=False)


@pytest.fixture(scope="module")
def orders_config(orders_image: str) -> dict:
    return json.loads(buildah("inspect", "--type", "image", orders_image))["OCIv1"]["config"]


@pytest.fixture(scope="module")
def orders_container(orders_image: str) -> Iterator[str]:
    name = f"orders-test-{uuid.uuid4().hex[:8]}"
    buildah("from", "--pull=false", "--name", name, orders_image)
    try:
        yield name
    finally:
        buildah("rm", name, check=False)


def test_user_image_keeps_the_workers_image_layout(orders_config: dict, config: dict) -> None:
    """Same user, working folder, environment and no entrypoint: the templates apply unchanged."""
    for key in ("User", "WorkingDir", "Env", "Cmd"):
        assert orders_config.get(key) == config.get(key), key
    assert not orders_config.get("Entrypoint")


@pytest.mark.slow
def test_user_image_runs_the_pipeline_read_only(
    orders_container: str, orders_config: dict, tmp_path: Path
) -> None:
    """The example's generator and processor, in its image, as uid 10001 on a read-only root."""
    run = ReadOnlyRun(orders_container, orders_config, tmp_path)
    assert run("id", "-u").stdout.strip() == str(IMAGE_UID)
    # The workers image has no pip, and the example adds none: the layer is the package only.
    assert run("python", "-c", "import pip").returncode != 0
    rows, seed = 1000, 3
    shards, merged = run_pipeline(
        run,
        "orders1",
        ["--rows", str(rows), "--seed", str(seed), "--generator", orders.GENERATOR],
        ["--processor", orders.PROCESSOR],
        rows_per_shard=300,
    )
    assert len(shards) == 4
    want = orders.expected(rows, seed)
    assert 0 < len(want) < rows
    assert merged == want
