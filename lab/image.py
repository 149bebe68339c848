"""Build (once per engine) the container VO-Box image from lab/image/ plus Debian's static busybox and openssl.

The image has no RUN step: its root filesystem (busybox applet links, web root, directories) is prepared
on the host, so Docker and Podman build it alike without a build container.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from typing import TYPE_CHECKING

from lab import shell, state
from lab.errors import LabError

if TYPE_CHECKING:
    from lab.engine import LabEngine

log = logging.getLogger(__name__)

CONTEXT_DIR = os.path.join(os.path.dirname(__file__), "image")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
OPENSSL_CANDIDATES = ("/usr/bin/openssl",)
REPOSITORY = "vobox-lab-box"
SCRIPTS = ("serve.sh", "tls.sh")          # lab/image/ files that go to /lab in the image
EMPTY_DIRS = ("tmp", "lab/tls", "cvmfs")  # mount points and scratch space
INDEX_HTML = "vobox-lab-box\n"
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


def applets(busybox: str) -> list[str]:
    """The applet names of a busybox binary (`busybox --list`), busybox itself left out."""
    out = shell.run([busybox, "--list"]).stdout
    return sorted(a for a in out.split() if a and a != "busybox" and "/" not in a)


def prepare_rootfs(root: str) -> None:
    """Lay out the image's root filesystem under ROOT: binaries and libraries, one /bin/APPLET -> busybox
    link per applet, /lab/serve.sh and tls.sh, /www/index.html and the empty directories."""
    for dest, src in rootfs_files().items():
        target = os.path.join(root, dest.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(src, target)
    bindir = os.path.join(root, "bin")
    for applet in applets(_busybox()):
        link = os.path.join(bindir, applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    os.makedirs(os.path.join(root, "lab"), exist_ok=True)
    for name in SCRIPTS:
        shutil.copy(os.path.join(CONTEXT_DIR, name), os.path.join(root, "lab", name))
    for d in EMPTY_DIRS + ("www",):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    with open(os.path.join(root, "www", "index.html"), "w") as f:
        f.write(INDEX_HTML)


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


def ensure_image(engine: LabEngine | None = None) -> str:
    """Return the image tag, building the image in ENGINE (default dockerd) first when it is not there."""
    from lab.engine import DEFAULT_ENGINE, for_lab

    eng = engine or for_lab(DEFAULT_ENGINE, "000000")
    tag = image_tag()
    with state.locked(f"image-{eng.name}"):
        if shell.ok(eng.cmd("image", "inspect", tag)):
            return tag
        with tempfile.TemporaryDirectory(prefix="vobox-lab-image-") as ctx:
            shutil.copy(os.path.join(CONTEXT_DIR, "Dockerfile"), ctx)
            prepare_rootfs(os.path.join(ctx, "rootfs"))
            log.info("building lab image %s with %s", tag, eng.name)
            shell.run(eng.cmd("build", "-q", "-t", tag, ctx), timeout_s=300)
    return tag
