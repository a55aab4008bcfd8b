"""Build the serving image with podman, and run, stop and remove its containers by id.

    python deploy/image.py [--archive model_store/squeezenet_v1.1.mar | --no-archive]
                           [--tag squeezenet-mms:latest] [--base-image IMAGE] [--context build/image]

The build context is a folder of its own (default ``build/image``), never the repository:

    wheels/    every locked dependency as a wheel: ``pip wheel -c constraints.txt`` on the host, redone
               only when constraints.txt or pyproject.toml change; the image installs them with
               ``pip install --no-index``, so the build needs no Python package index and no host
               certificate (none is copied)
    project/   the squeezenet-mar wheel of the working tree (rebuilt every time)
    models/    the archive baked into the image (and its .sha256), or nothing for the generic image

The base image is ``BASE_IMAGE`` (environment or ``--base-image``); without it, the local
``localhost/bookworm-minbase`` that ``deploy/container-setup.sh`` imports when there is one, else the
official ``python:3.11-slim-bookworm``. Podman reads ``deploy/podman/containers.conf`` (see there).

Used by ``make image`` (deploy/image.mk), ``deploy/measure.py`` and tests/test_container.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
DEFAULT_ARCHIVE = ROOT / "model_store" / "squeezenet_v1.1.mar"
DEFAULT_TAG = "squeezenet-mms:latest"
LOCAL_BASE = "localhost/bookworm-minbase"
OFFICIAL_BASE = "docker.io/library/python:3.11-slim-bookworm"
PROJECT_WHEEL_PREFIX = "squeezenet_mar-"


class ImageError(Exception):
    """podman or pip failed; the message carries their output."""


def podman_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for podman: this repository's containers.conf unless CONTAINERS_CONF is set."""
    env = dict(os.environ if base is None else base)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def podman(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS``; raises ImageError with podman's output when it fails and ``check``."""
    if shutil.which("podman") is None:
        raise ImageError("podman is not installed: run `make container-setup` (as root)")
    result = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise ImageError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def default_base_image() -> str:
    """BASE_IMAGE from the environment, else the local minbase image if imported, else the official one."""
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    if shutil.which("podman") and podman("image", "exists", LOCAL_BASE, check=False).returncode == 0:
        return LOCAL_BASE
    return OFFICIAL_BASE


# What the project's wheel is built from.
PROJECT_FILES = ("pyproject.toml", "README.md", "archive", "handler")


def _inputs_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for name in ("constraints.txt", "pyproject.toml"):
        digest.update((root / name).read_bytes())
    return digest.hexdigest()


def _folder_digest(folder: Path) -> str:
    """SHA-256 over the names and bytes of the wheels in ``folder``: what their image layer is made of."""
    digest = hashlib.sha256()
    for wheel in sorted(folder.glob("*.whl")):
        digest.update(wheel.name.encode() + b"\0" + hashlib.sha256(wheel.read_bytes()).digest())
    return digest.hexdigest()


def _pip(*args: str, timeout: float = 900.0) -> None:
    command = [sys.executable, "-m", "pip", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise ImageError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-4000:]}")


def prepare_wheels(context: Path, root: Path = ROOT) -> list[Path]:
    """``context/wheels``: the locked dependencies (kept while constraints.txt and pyproject.toml are
    unchanged) and ``context/project``: this project's wheel. Returns every wheel."""
    wheels, project = context / "wheels", context / "project"
    stamp = wheels / ".inputs-sha256"
    wanted = _inputs_digest(root)
    if not (stamp.is_file() and stamp.read_text().strip() == wanted):
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        logger.info("pip wheel -c constraints.txt into %s", wheels)
        _pip("wheel", "--quiet", "-c", str(root / "constraints.txt"), "--wheel-dir", str(wheels), str(root))
        for built in wheels.glob(f"{PROJECT_WHEEL_PREFIX}*.whl"):
            built.unlink()  # the project goes to project/, rebuilt every time
        stamp.write_text(wanted + "\n")
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="squeezenet-wheel-") as tmp:
        # From a copy of the sources only: setuptools reuses build/lib, where modules deleted from
        # the sources (archive/container.py before it became a package) would live on in the wheel.
        source = Path(tmp) / "source"
        for name in PROJECT_FILES:
            if (root / name).is_dir():
                shutil.copytree(root / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                source.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / name, source / name)
        _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(project), str(source))
    return sorted(wheels.glob("*.whl")) + sorted(project.glob("*.whl"))


def stage_models(context: Path, archive: Path | None) -> Path:
    """``context/models``: ``archive`` and its ``.sha256`` when there is one, else empty."""
    models = context / "models"
    shutil.rmtree(models, ignore_errors=True)
    models.mkdir(parents=True)
    if archive is not None:
        if not archive.is_file():
            raise ImageError(f"{archive}: no such archive (build it first: make archive)")
        shutil.copyfile(archive, models / archive.name)
        checksum = archive.with_name(archive.name + ".sha256")
        if checksum.is_file():
            shutil.copyfile(checksum, models / checksum.name)
    (models / ".keep").touch()  # an empty folder still gives COPY something to copy
    return models


@dataclass(frozen=True)
class BuiltImage:
    id: str
    tag: str
    base: str
    seconds: float
    size: int  # bytes, as podman reports the image


def image_size(image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def build_image(
    context: Path,
    tag: str = DEFAULT_TAG,
    base: str | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float = 1800.0,
) -> BuiltImage:
    """``podman build`` of deploy/Containerfile in ``context`` (prepared by :func:`prepare_wheels` and
    :func:`stage_models`). Docker format, so that HEALTHCHECK is kept (OCI images have no such field)."""
    base = base or default_base_image()
    iidfile = context / ".image-id"
    iidfile.unlink(missing_ok=True)
    command = ["build", "--format", "docker", "--file", str(CONTAINERFILE), "--tag", tag]
    command += ["--build-arg", f"BASE_IMAGE={base}", "--iidfile", str(iidfile)]
    for arg, folder in (("WHEELS_SHA256", "wheels"), ("PROJECT_SHA256", "project")):
        command += ["--build-arg", f"{arg}={_folder_digest(context / folder)}"]
    for key, value in sorted((labels or {}).items()):
        command += ["--label", f"{key}={value}"]
    started = time.monotonic()
    logger.info("podman %s %s", " ".join(command), context)
    podman(*command, str(context), timeout=timeout)
    seconds = time.monotonic() - started
    image_id = iidfile.read_text().strip().removeprefix("sha256:")
    return BuiltImage(id=image_id, tag=tag, base=base, seconds=seconds, size=image_size(image_id))


# ------------------------------------------------------------------------------------ containers
def run_container(image: str, *options: str, args: Sequence[str] = ()) -> str:
    """``podman run --detach`` (never --rm, so its output and exit code stay readable); the id."""
    return podman("run", "--detach", *options, image, *args).stdout.strip()


def container_state(container: str) -> dict[str, object]:
    result = podman("inspect", "--format", "{{json .State}}", container)
    return json.loads(result.stdout)


def container_logs(container: str) -> str:
    result = podman("logs", container, check=False)
    return result.stdout + result.stderr


def wait_for_exit(container: str, timeout: float) -> int | None:
    """The exit code once the container has stopped, or None if it is still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        state = container_state(container)
        if not state.get("Running"):
            return int(str(state.get("ExitCode", -1)))
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def host_pids(container: str) -> list[int]:
    """The host PIDs of every process in the container."""
    result = podman("top", container, "hpid", check=False)
    return sorted(int(line) for line in result.stdout.split()[1:] if line.strip().isdigit())


def remove_container(container: str) -> None:
    podman("rm", "--force", "--time", "0", container, check=False)


def remove_image(image_id: str) -> None:
    podman("rmi", "--force", image_id, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python deploy/image.py", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--archive", type=Path, default=DEFAULT_ARCHIVE, help="archive to bake in (%(default)s)"
    )
    which.add_argument(
        "--no-archive", action="store_true", help="the generic image: archives named at run time"
    )
    parser.add_argument("--tag", default=DEFAULT_TAG, help="(default %(default)s)")
    parser.add_argument(
        "--base-image", help=f"(default $BASE_IMAGE, else {LOCAL_BASE} if present, else {OFFICIAL_BASE})"
    )
    parser.add_argument(
        "--context", type=Path, default=ROOT / "build" / "image", help="(default %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        started = time.monotonic()
        wheels = prepare_wheels(args.context)
        wheel_seconds = time.monotonic() - started
        stage_models(args.context, None if args.no_archive else args.archive)
        built = build_image(args.context, tag=args.tag, base=args.base_image)
    except (ImageError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"image     {built.tag}  {built.id[:12]}  (base {built.base})")
    print(f"archive   {'none: name one at run time' if args.no_archive else args.archive}")
    print(f"wheels    {len(wheels)} in {args.context / 'wheels'} ({wheel_seconds:.1f} s)")
    print(f"build     {built.seconds:.1f} s; size {built.size / 1e6:.0f} MB")
    print(f"run       podman run --rm -p 127.0.0.1:8080:8080 {built.tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
