"""Build (once) the container VO-Box image from lab/image/ plus Debian's static busybox and openssl."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile

from lab import shell, state
from lab.errors import LabError

log = logging.getLogger(__name__)

CONTEXT_DIR = os.path.join(os.path.dirname(__file__), "image")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
OPENSSL_CANDIDATES = ("/usr/bin/openssl",)
REPOSITORY = "vobox-lab-box"
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def _first(candidates: tuple[str, ...], package: str) -> str:
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise LabError(f"{candidates[0]} is missing (apt-get install {package}, or run scripts/setup)")


def _busybox() -> str:
    return _first(BUSYBOX_CANDIDATES, "busybox-static")


def rootfs_files() -> dict[str, str]:
    """Image path -> host file: busybox, openssl and every shared library ldd names for openssl."""
    openssl = _first(OPENSSL_CANDIDATES, "openssl")
    files = {"/bin/busybox": _busybox(), "/usr/bin/openssl": openssl}
    out = shell.run(["ldd", openssl]).stdout
    for line in out.splitlines():
        m = _LDD_PATH.search(line)
        if m:
            files[m.group(1)] = os.path.realpath(m.group(1))
    return files


def image_tag() -> str:
    """vobox-lab-box:<hash of the build context and copied binaries>, so a change builds a new image."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(CONTEXT_DIR)):
        digest.update(name.encode())
        with open(os.path.join(CONTEXT_DIR, name), "rb") as f:
            digest.update(f.read())
    for dest, src in sorted(rootfs_files().items()):
        digest.update(dest.encode())
        with open(src, "rb") as f:
            digest.update(f.read())
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"


def ensure_image() -> str:
    """Return the image tag, building the image first when it is not present."""
    tag = image_tag()
    with state.locked("image"):
        if shell.ok(["docker", "image", "inspect", tag]):
            return tag
        with tempfile.TemporaryDirectory(prefix="vobox-lab-image-") as ctx:
            for name in os.listdir(CONTEXT_DIR):
                shutil.copy(os.path.join(CONTEXT_DIR, name), ctx)
            for dest, src in rootfs_files().items():
                target = os.path.join(ctx, "rootfs", dest.lstrip("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy(src, target)
            log.info("building lab image %s", tag)
            shell.run(["docker", "build", "-q", "-t", tag, ctx], timeout_s=300)
    return tag
