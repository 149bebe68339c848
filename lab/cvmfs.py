"""CVMFS stand-in: one small read-only FUSE filesystem per lab (fusepy on Debian's libfuse2), a tree per box.

Layout on the host, under the lab's run dir (RUN = /run/vobox-lab/<run id>):
  RUN/cvmfs-fuse/                     the FUSE mount; its root has one directory per container box
  RUN/cvmfs/<box>/alice.cern.ch/      a bind mount of RUN/cvmfs-fuse/<box> (the repository)
  RUN/cvmfs-mode/<box>                the box's fault: absent = healthy, "hang" or "error"
A container box runs with `-v RUN/cvmfs/<box>:/cvmfs` as a real VO-Box runs with `-v /cvmfs:/cvmfs`:
the bind source is a plain directory (Docker never looks into FUSE) and the repository is a submount.

Faults, read by the server before every operation on a box's tree:
  hang   every operation blocks until the fault is cleared (cvmfs issue 3378, a hung cvmfs2)
  error  every operation fails with ENOTCONN "Transport endpoint is not connected" (cvmfs issue 3512,
         what the kernel answers once cvmfs2 has died; the stand-in stays alive so `clear` is instant)
Kernel attribute and entry caching are off, so every stat reaches the server, as after a cache expiry.
Run as `python -m lab.cvmfs MOUNTPOINT MODE_DIR BOX,BOX...`; SIGTERM unmounts and exits.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import sys
import time

log = logging.getLogger(__name__)

REPOSITORY = "alice.cern.ch"
FILES = {  # path inside a repository -> content
    "etc/version": b"2.11.5.0\n",
    "etc/README": b"vobox-lab CVMFS stand-in (a FUSE filesystem of the lab)\n",
}
HANG = "hang"
ERROR = "error"
MODES = (HANG, ERROR)
POLL_S = 0.1
START_S = time.time()


def _dirs() -> set[str]:
    out = {""}
    for path in FILES:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


DIRS = _dirs()


def set_mode(mode_dir: str, box: str, mode: str | None) -> None:
    """Set (hang, error) or clear (None) the CVMFS fault of one box; blocked operations resume at once on clear."""
    path = os.path.join(mode_dir, box)
    if mode is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    if mode not in MODES:
        raise ValueError(f"cvmfs mode must be one of {', '.join(MODES)}, got {mode!r}")
    os.makedirs(mode_dir, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(mode)
    os.replace(tmp, path)


def read_mode(mode_dir: str, box: str) -> str | None:
    """The CVMFS fault of one box (hang, error) or None."""
    try:
        with open(os.path.join(mode_dir, box)) as f:
            mode = f.read().strip()
    except OSError:
        return None
    return mode if mode in MODES else None


def make_operations(mode_dir: str, boxes: list[str]):
    """The fusepy Operations of the stand-in for these boxes (fusepy is imported here: it needs libfuse2)."""
    from fuse import FuseOSError, Operations

    class CvmfsStandIn(Operations):
        """Read-only tree /<box>/<FILES> whose every operation obeys the box's mode."""

        def __call__(self, op, *args):
            path = args[0] if args and isinstance(args[0], str) else "/"
            box = path.strip("/").split("/", 1)[0]
            if box and op not in ("init", "destroy"):
                mode = read_mode(mode_dir, box)
                while mode == HANG:
                    time.sleep(POLL_S)
                    mode = read_mode(mode_dir, box)
                if mode == ERROR:
                    raise FuseOSError(errno.ENOTCONN)
            return super().__call__(op, *args)

        @staticmethod
        def _inner(path: str) -> tuple[str, str | None]:
            """(box, path inside the repository) or (box, None) for the box directory itself."""
            parts = path.strip("/").split("/", 1)
            return parts[0], (parts[1] if len(parts) > 1 else None)

        def getattr(self, path, fh=None):
            base = {"st_uid": 0, "st_gid": 0, "st_atime": START_S, "st_mtime": START_S, "st_ctime": START_S}
            box, inner = self._inner(path)
            if path != "/" and box not in boxes:
                raise FuseOSError(errno.ENOENT)
            if path == "/" or inner is None or inner in DIRS:
                return {**base, "st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, "st_size": 4096}
            if inner in FILES:
                return {**base, "st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": len(FILES[inner])}
            raise FuseOSError(errno.ENOENT)

        def readdir(self, path, fh):
            box, inner = self._inner(path)
            if path == "/":
                return [".", "..", *boxes]
            here = "" if inner is None else inner
            if box not in boxes or here not in DIRS:
                raise FuseOSError(errno.ENOTDIR)
            prefix = f"{here}/" if here else ""
            names = {p[len(prefix):].split("/", 1)[0] for p in (*FILES, *DIRS) if p.startswith(prefix) and p != here}
            return [".", "..", *sorted(n for n in names if n)]

        def open(self, path, flags):
            if flags & (os.O_WRONLY | os.O_RDWR):
                raise FuseOSError(errno.EROFS)
            box, inner = self._inner(path)
            if box not in boxes or inner not in FILES:
                raise FuseOSError(errno.ENOENT)
            return 0

        def read(self, path, size, offset, fh):
            inner = self._inner(path)[1]
            if inner is None or inner not in FILES:  # open() let only FILES through
                raise FuseOSError(errno.ENOENT)
            return FILES[inner][offset:offset + size]

        def statfs(self, path):
            return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1024, "f_bfree": 512, "f_bavail": 512,
                    "f_files": 100, "f_ffree": 50, "f_namemax": 255}

    return CvmfsStandIn()


def main(argv: list[str]) -> int:
    """Mount the stand-in at argv[0], modes in argv[1], boxes argv[2] (comma-separated); return once unmounted."""
    from fuse import FUSE

    if len(argv) != 3:
        print("usage: python -m lab.cvmfs MOUNTPOINT MODE_DIR BOX[,BOX...]", file=sys.stderr)
        return 2
    mountpoint, mode_dir, boxes = argv[0], argv[1], [b for b in argv[2].split(",") if b]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s cvmfs-stand-in %(message)s")
    FUSE(make_operations(mode_dir, boxes), mountpoint, foreground=True, nothreads=False, ro=True, allow_other=True,
         fsname="cvmfs2", subtype="cvmfs", attr_timeout=0, entry_timeout=0, negative_timeout=0, direct_io=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
