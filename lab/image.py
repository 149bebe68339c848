"""Build (once) the container VO-Box image from lab/image/ plus Debian's static busybox."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile

from lab import shell, state
from lab.errors import LabError

log = logging.getLogger(__name__)

CONTEXT_DIR = os.path.join(os.path.dirname(__file__), "image")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
REPOSITORY = "vobox-lab-box"


def _busybox() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path):
            return path
    raise LabError("Debian's static busybox is missing (apt-get install busybox-static, or run scripts/setup)")


def image_tag() -> str:
    """vobox-lab-box:<hash of the build context and busybox>, so a changed context builds a new image."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(CONTEXT_DIR)):
        digest.update(name.encode())
        with open(os.path.join(CONTEXT_DIR, name), "rb") as f:
            digest.update(f.read())
    with open(_busybox(), "rb") as f:
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
            shutil.copy(_busybox(), os.path.join(ctx, "busybox"))
            log.info("building lab image %s", tag)
            shell.run(["docker", "build", "-q", "-t", tag, ctx], timeout_s=300)
    return tag
