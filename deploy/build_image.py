"""Build the gateway image with podman from deploy/Dockerfile (`make image`); stdlib only.

Why a script and not one `podman build` line: machines like this one have no Docker engine
and no registry, so the build needs podman's measured recipe (runc, no default ulimits, the
host CA bundle for pip, a Debian base made with debootstrap; deploy/podman/containers.conf), and
CI wants to skip the build entirely when nothing that goes into the image changed. The
image is tagged `ctx-<hash>` where the hash covers the Dockerfile, the build context (as
.dockerignore filters it), the base image's id and the build arguments; when that tag
exists the build is skipped. The last line on stdout is the image reference.

    python3 deploy/build_image.py                       # local Debian base, created if missing
    BASE_IMAGE=python:3.11-slim python3 deploy/build_image.py   # the published base
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
CONTEXT = DEPLOY.parent
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = CONTEXT / ".dockerignore"
CONTAINERS_CONF = DEPLOY / "podman" / "containers.conf"
IMAGE = "localhost/django-api-gateway"
LOCAL_BASE = "localhost/debian-bookworm:base"
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Mounted beside, never over, the image's own bundle: covering it breaks dpkg.
CA_IN_BUILD = "/run/host-ca.crt"
APT_CACHE_GLOBS = ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*")
CONTENT_TAG_PREFIX = "ctx-"
HASH_CHARS = 16
DEBOOTSTRAP_TIMEOUT_SECONDS = 900
BUILD_TIMEOUT_SECONDS = 1800


def log(message: str) -> None:
    print(f"image: {message}", file=sys.stderr, flush=True)


def podman_env() -> dict[str, str]:
    """crun cannot set rlimits under this machine's cgroups; runc without default ulimits can."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=check
    )


def image_exists(reference: str) -> bool:
    return podman("image", "exists", reference, check=False).returncode == 0


def image_id(reference: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()


def apt_mirror() -> str:
    """The Debian mirror apt already uses here (deb822 or one-line sources), else deb.debian.org."""
    for path in APT_SOURCES:
        if not path.exists():
            continue
        text = path.read_text()
        match = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.MULTILINE) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+", text, re.MULTILINE
        )
        if match:
            return match.group(1)
    return DEFAULT_MIRROR


def drop_package_caches(rootfs: Path) -> None:
    """The downloaded .debs and apt's caches are a third of a fresh minbase; a build refetches."""
    for pattern in APT_CACHE_GLOBS:
        for path in rootfs.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()


def ensure_local_base(reference: str = LOCAL_BASE) -> None:
    """Create the Debian base from Debian's own packages once; podman's storage keeps it."""
    if image_exists(reference):
        return
    if shutil.which("debootstrap") is None:
        raise SystemExit(f"image: {reference} is missing and debootstrap is not installed")
    mirror = apt_mirror()
    log(f"creating {reference} with debootstrap from {mirror} (a few minutes, once)")
    with tempfile.TemporaryDirectory(prefix="gateway-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror],
            check=True,
            timeout=DEBOOTSTRAP_TIMEOUT_SECONDS,
            stdout=subprocess.DEVNULL,
        )
        drop_package_caches(rootfs)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["podman", "import", "-", reference], stdin=tar.stdout, env=podman_env(), capture_output=True
        )
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise SystemExit(f"image: importing {reference} failed: {imported.stderr.decode()[-2000:]}")


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines() if DOCKERIGNORE.exists() else []
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """.dockerignore's common forms: a path or glob, `**/` anywhere; a directory covers its tree."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.rsplit("/", 1)[-1], bare):
                return True
    return False


def context_files() -> list[Path]:
    """Every file the build context sends, in a stable order."""
    patterns = ignore_patterns()
    files = []
    for root, dirs, names in os.walk(CONTEXT):
        rel_root = Path(root).relative_to(CONTEXT).as_posix()
        rel_root = "" if rel_root == "." else f"{rel_root}/"
        dirs[:] = sorted(d for d in dirs if not ignored(f"{rel_root}{d}", patterns))
        files += [Path(root) / n for n in sorted(names) if not ignored(f"{rel_root}{n}", patterns)]
    return files


def content_tag(base_id: str, build_args: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"base": base_id, "args": build_args}, sort_keys=True).encode())
    for path in [DOCKERFILE, *context_files()]:
        digest.update(path.relative_to(CONTEXT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
        digest.update(b"\0")
    return f"{CONTENT_TAG_PREFIX}{digest.hexdigest()[:HASH_CHARS]}"


def project_version() -> str:
    with (CONTEXT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def build(base: str, reference: str, extra_tags: list[str], no_cache: bool) -> float:
    # docker format keeps the HEALTHCHECK (OCI images have no such field).
    command = ["build", "--runtime", "runc", "--network", "host", "--layers", "--format", "docker"]
    command += ["--build-arg", f"BASE_IMAGE={base}"]
    if HOST_CA_BUNDLE.exists():
        command += ["-v", f"{HOST_CA_BUNDLE}:{CA_IN_BUILD}:ro", "--build-arg", f"PIP_CERT={CA_IN_BUILD}"]
    if no_cache:
        command.append("--no-cache")
    for tag in [reference, *extra_tags]:
        command += ["-t", tag]
    command += ["-f", str(DOCKERFILE), str(CONTEXT)]
    started = time.monotonic()
    result = subprocess.run(
        ["podman", *command], env=podman_env(), stdout=sys.stderr, timeout=BUILD_TIMEOUT_SECONDS
    )
    if result.returncode != 0:
        raise SystemExit(f"image: podman build failed ({result.returncode})")
    return time.monotonic() - started


def prune_old_content_tags(keep: str) -> None:
    """Untag earlier content builds (best effort: one in use by a container stays)."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE, check=False).stdout.split()
    for reference in listed:
        tag = reference.rsplit(":", 1)[1]
        if tag.startswith(CONTENT_TAG_PREFIX) and reference != keep:
            podman("rmi", reference, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=os.environ.get("BASE_IMAGE") or LOCAL_BASE)
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer (cold build)")
    parser.add_argument("--force", action="store_true", help="build even when the content tag exists")
    args = parser.parse_args(argv)
    if shutil.which("podman") is None:
        raise SystemExit("image: podman is not installed (apt-get install podman runc debootstrap)")
    if args.base == LOCAL_BASE:
        ensure_local_base()
    elif not image_exists(args.base):
        podman("pull", args.base, timeout=600)
    reference = f"{IMAGE}:{content_tag(image_id(args.base), {'BASE_IMAGE': args.base})}"
    # Also the names compose and the manifests use (django-api-gateway:<version>).
    aliases = [f"{IMAGE}:latest", f"{IMAGE}:{project_version()}"]
    if image_exists(reference) and not (args.force or args.no_cache):
        podman("tag", reference, *aliases)
        log(f"{reference} is up to date (nothing in the context changed)")
    else:
        seconds = build(args.base, reference, aliases, args.no_cache)
        log(f"built {reference} in {seconds:.1f} s")
        prune_old_content_tags(keep=reference)
    size = podman("image", "inspect", "--format", "{{.Size}}", reference).stdout.strip()
    log(f"size {int(size) / 1e6:.0f} MB")
    print(reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
