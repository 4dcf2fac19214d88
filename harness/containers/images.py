"""Images for endpoint descriptors, built here from Debian packages.

A client descriptor with ``image:`` and ``build: Dockerfile`` gets its image
built from its own folder, on the local base callwall-base:bookworm, which
docker/build-base.sh (the one base builder, also `make image`'s) imports from
a cached debootstrap tarball when it is missing: no registry is needed. The
Dockerfile takes the base as ``ARG BASE_IMAGE``.

Builds are cached twice: the engine keeps its layer cache, and an image
carries the digest of its build folder as a label, so an unchanged folder is
not built again at all. Two runs never build one image at once (a lock).

    python -m harness.containers.images [NAME...]   build (or find) descriptor images
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import paths
from harness.containers.engine import (
    DEFAULT_HOST,
    EngineError,
    api_status,
    default_state_dir,
    ping,
)
from harness.containers.runtime import ContainerError, Docker, build_lock
from harness.spec.descriptor import Descriptor, descriptor, descriptors

BASE_IMAGE = "callwall-base:bookworm"
CONTEXT_LABEL = "org.callwall.context"
MAX_CONTEXT_BYTES = 50_000_000
BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class ImageBuild:
    """One image made ready: whether it had to be built, and how long that took."""

    image: str
    built: bool
    seconds: float
    log: Path | None = None


def context_digest(folder: Path) -> str:
    """The build folder's digest: every file's path and content (caches and
    Python bytecode left out)."""
    digest = hashlib.sha256()
    total = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        data = path.read_bytes()
        total += len(data)
        if total > MAX_CONTEXT_BYTES:
            raise ContainerError(f"the build folder {folder} holds more than "
                                 f"{MAX_CONTEXT_BYTES} bytes")
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()[:32]


def base_builder() -> Path:
    """docker/build-base.sh: the checkout's, or the copy an installed wheel
    carries (harness.paths.HOME)."""
    return (paths.checkout_root() or paths.HOME) / "docker" / "build-base.sh"


def base_tarball() -> Path:
    """Where docker/build-base.sh caches its debootstrap tarball
    (CALLWALL_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/callwall)."""
    cache = os.environ.get("CALLWALL_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "callwall")
    return Path(cache) / "base" / "debian-bookworm-minbase.tar"


def _present(host: str | None, image: str) -> bool | None:
    """Whether the answering engine at `host` has `image`; None when unknown."""
    if host is None:
        return None
    status = api_status(host, f"/images/{image}/json", timeout=2.0)
    return {200: True, 404: False}.get(status) if status is not None else None


def missing_base(host: str | None) -> list[str]:
    """What this machine lacks to make the base image callwall-base:bookworm
    (empty when it can): it is on the answering engine at `host` (None: no
    engine to ask yet), or docker/build-base.sh imports it from the cached
    tarball, or makes that tarball with debootstrap."""
    if _present(host, BASE_IMAGE):
        return []
    if not base_builder().is_file():
        return [f"docker/build-base.sh to make the base image {BASE_IMAGE} "
                "(run from a checkout of callwall)"]
    tarball = base_tarball()
    if (tarball.is_file() and tarball.stat().st_size > 0) or shutil.which("debootstrap"):
        return []
    return [f"debootstrap (Debian package debootstrap) to make the base image {BASE_IMAGE}"]


def missing_for_image(found: Descriptor) -> list[str]:
    """What this machine lacks to run a client descriptor's image, each as
    'what (Debian package P)' like the other missing-tool checks: the Docker
    SDK, an engine (one answering at $DOCKER_HOST, or dockerd for callwall to
    start its own as root), and for an image not on the engine, what building
    it needs (its build:, the base image or what makes it). Empty for a
    descriptor without image, and when everything is there. Cheap: it asks an
    answering engine, but never starts one."""
    client = found.client
    if client is None or client.image is None:
        return []
    missing = []
    if importlib.util.find_spec("docker") is None:
        missing.append("the Docker SDK for Python (PyPI package docker)")
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    answers = ping(host, timeout=1.0)
    if not answers and not (os.geteuid() == 0 and shutil.which("dockerd")):
        return [*missing, "a Docker engine (Debian package docker.io)"]
    engine_host = host if answers else None
    if _present(engine_host, client.image):
        return missing
    if client.build is None:
        if answers:
            missing.append(f"the image {client.image} (the descriptor has no build: to make "
                           "it; load it into the engine)")
        return missing
    return missing + missing_base(engine_host)


def ensure_base(docker: Docker) -> None:
    """callwall-base:bookworm on the engine, imported by docker/build-base.sh
    from its cached debootstrap tarball (made first if needed; root only)."""
    if _image_labels(docker, BASE_IMAGE) is not None:
        return
    script = base_builder()
    if not script.is_file():
        raise ContainerError(f"no image {BASE_IMAGE}, and no docker/build-base.sh to make it "
                             "(run from a checkout of callwall)")
    env = dict(os.environ, DOCKER_HOST=docker.engine.host)
    done = subprocess.run([str(script), BASE_IMAGE], env=env, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise ContainerError(f"docker/build-base.sh failed ({done.returncode}):\n"
                             f"{(done.stderr or done.stdout).strip()[-2000:]}")


def ensure_image(docker: Docker, found: Descriptor, log_dir: Path | None = None) -> ImageBuild:
    """The descriptor's image on the engine: built from its folder when it
    has ``build:`` and the image is missing or was built from other files;
    without ``build:`` it must already be there."""
    client = found.client
    if client is None or client.image is None:
        raise ContainerError(f"descriptor {found.name} names no image")
    image = client.image
    started = time.monotonic()
    if client.build is None:
        if _image_labels(docker, image) is None:
            raise ContainerError(f"descriptor {found.name}: no image {image} on the engine at "
                                 f"{docker.engine.host}, and no build: to make it")
        return ImageBuild(image, False, 0.0)
    digest = context_digest(found.directory)
    with build_lock(image):
        if (_image_labels(docker, image) or {}).get(CONTEXT_LABEL) == digest:
            return ImageBuild(image, False, round(time.monotonic() - started, 3))
        ensure_base(docker)
        previous = _image_id(docker, image)
        log = (log_dir or default_state_dir().parent / "builds") / f"{found.name}.log"
        _build(docker, found.directory, client.build, image, digest, log)
        current = _image_id(docker, image)
        if previous and previous != current:
            try:  # the image this build replaced under the tag; kept if still in use
                docker.client.images.remove(previous, noprune=False)
            except Exception:  # noqa: BLE001 - best effort, like `make image`
                pass
    return ImageBuild(image, True, round(time.monotonic() - started, 1), log)


def _build(docker: Docker, folder: Path, dockerfile: str, image: str, digest: str,
           log: Path) -> None:
    """The classic builder, with the host's network (the engine has no bridge);
    its output goes to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    error = None
    with open(log, "w", encoding="utf-8") as out:
        try:
            stream = docker.client.api.build(
                path=str(folder), dockerfile=dockerfile, tag=image, rm=True, forcerm=True,
                network_mode="host", pull=False, decode=True, labels={CONTEXT_LABEL: digest},
                buildargs={"BASE_IMAGE": BASE_IMAGE}, timeout=BUILD_TIMEOUT_S)
            for chunk in stream:
                if "stream" in chunk:
                    out.write(str(chunk["stream"]))
                if "error" in chunk:
                    error = str(chunk["error"]).strip()
                    out.write(f"ERROR: {error}\n")
        except Exception as exc:  # noqa: BLE001 - the SDK's errors, one message
            error = str(exc)
    if error is not None:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ContainerError(f"building {image} from {folder / dockerfile} failed: {error}\n"
                             f"last lines of {log}:\n{tail}")


def _image_labels(docker: Docker, image: str) -> dict[str, str] | None:
    """The image's labels ({} if none), or None when there is no such image."""
    try:
        found = docker.client.images.get(image)
    except Exception:  # noqa: BLE001 - NotFound, or an engine error: both "not there"
        return None
    labels = found.labels or {}
    return {str(k): str(v) for k, v in labels.items()}


def _image_id(docker: Docker, image: str) -> str | None:
    try:
        return str(docker.client.images.get(image).id)
    except Exception:  # noqa: BLE001
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.containers.images",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="client descriptors (default: every one with an image)")
    parser.add_argument("--json", action="store_true", help="print what was done as JSON")
    args = parser.parse_args(argv)
    try:
        chosen = [descriptor(n) for n in args.names] if args.names else [
            d for d in descriptors().clients.values() if d.client and d.client.image]
    except KeyError as exc:
        print(f"images: {exc.args[0]}", file=sys.stderr)
        return 2
    done: list[ImageBuild] = []
    try:
        with Docker.open() as docker:
            for found in chosen:
                result = ensure_image(docker, found)
                done.append(result)
                what = f"built in {result.seconds} s" if result.built else "up to date"
                print(f"{found.name}: {result.image} {what}", file=sys.stderr)
    except (EngineError, ContainerError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{"image": d.image, "built": d.built, "seconds": d.seconds}
                          for d in done]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
