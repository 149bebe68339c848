"""The version of vobox-agent: the build's `agent/_version.py`, else the checkout's git tag, else FALLBACK_VERSION.

A release is a tag `vMAJOR.MINOR.PATCH` (PEP 440 pre-releases allowed: `v1.2.0rc1`); the build (setup.py)
and `vobox-agent --version` in a clone both derive the version from `git describe` with the rule of
`from_describe`, the equivalent of setuptools-scm's `post-release` scheme without its build dependency.
This module imports only the standard library: setup.py loads it by path before anything is installed.
"""
from __future__ import annotations

import importlib
import os
import re

# A clone or export without any `v*` tag (before the first release, a shallow clone, a tarball without .git)
# reports this: the version the first tag (v0.1.0, CHANGELOG.md) gives.
FALLBACK_VERSION = "0.1.0"

# The environment variable that overrides everything (a container build from a tree without .git, a distro
# rebuild): the same role as setuptools-scm's SETUPTOOLS_SCM_PRETEND_VERSION.
ENV_OVERRIDE = "VOBOX_AGENT_VERSION"

DESCRIBE_ARGS = ("describe", "--tags", "--long", "--dirty", "--match", "v[0-9]*")

# PEP 440 public release with an optional pre-release (no epoch, no local part): what a release tag may carry.
_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)((a|b|rc)\d+)?$")
_DESCRIBE = re.compile(r"^v(?P<tag>.+)-(?P<distance>\d+)-g(?P<sha>[0-9a-f]{4,40})(?P<dirty>-dirty)?$")


def check_release(text: str, what: str) -> str:
    """`text` if it is a release version (`1.2.3`, `1.2.3rc1`); ValueError naming `what` otherwise."""
    if not _RELEASE.match(text):
        raise ValueError(f"{what} {text!r} is not a release version MAJOR.MINOR.PATCH (optionally a1, b1, rc1)")
    return text


def from_describe(describe: str) -> str:
    """The PEP 440 version for the output of `git describe --tags --long --dirty --match 'v[0-9]*'`.

    `v1.2.3-0-gabc1234` -> `1.2.3` (at the tag); `v1.2.3-4-gabc1234` -> `1.2.3.post4+gabc1234` (four commits
    after it); a `-dirty` suffix adds the local label `dirty` (`1.2.3+dirty`, `1.2.3.post4+gabc1234.dirty`).
    Raises ValueError, naming the text, for anything else (a tag that is not vMAJOR.MINOR.PATCH).
    """
    m = _DESCRIBE.match(describe.strip())
    if m is None:
        raise ValueError(f"git describe gave {describe.strip()!r}, expected vMAJOR.MINOR.PATCH-N-gSHA")
    tag = check_release(m["tag"], "the tag v")
    distance = int(m["distance"])
    local = ([f"g{m['sha']}"] if distance else []) + (["dirty"] if m["dirty"] else [])
    return tag + (f".post{distance}" if distance else "") + ("+" + ".".join(local) if local else "")


def from_git(root: str, timeout_s: float = 10.0) -> str | None:
    """The version of the git checkout at `root` by `from_describe`; None without git, a checkout or a `v*` tag.

    Raises ValueError when the nearest tag is not a release version (from_describe).
    """
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    import subprocess  # here, not at the top: every CLI start imports this module, only --version runs git

    try:
        proc = subprocess.run(["git", "-C", root, *DESCRIBE_ARGS], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:   # no tag reachable (or not a repository git accepts, e.g. another owner's)
        return None
    return from_describe(proc.stdout)


def source_root() -> str:
    """The directory holding this package (a checkout's root when run from a clone)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def version(root: str | None = None) -> str:
    """The version: $VOBOX_AGENT_VERSION, else `agent/_version.py` (built), else git at `root`, else FALLBACK_VERSION.

    Raises ValueError when the override or the nearest tag is not a release version.
    """
    override = os.environ.get(ENV_OVERRIDE, "").strip()
    if override:
        return _check_override(override)
    try:  # written into the wheel and the sdist by setup.py; absent in a checkout
        built = getattr(importlib.import_module("agent._version"), "__version__", None)
    except ImportError:
        built = None
    if built and root is None:
        return str(built)
    return from_git(root or source_root()) or _read_built(root) or FALLBACK_VERSION


def _check_override(text: str) -> str:
    """An override is a release or a post/dev/local variant of one (PEP 440, no epoch)."""
    if not re.match(r"^\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[A-Za-z0-9.]+)?$", text):
        raise ValueError(f"${ENV_OVERRIDE} {text!r} is not a PEP 440 version like 1.2.3 or 1.2.3.post4+gabc1234")
    return text


def _read_built(root: str | None) -> str | None:
    """The version an sdist carries in `agent/_version.py` (a tree without .git), None without one."""
    if root is None:
        return None
    path = os.path.join(root, "agent", "_version.py")
    try:
        with open(path, encoding="utf-8") as f:
            m = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def module_text(ver: str) -> str:
    """The text of the generated `agent/_version.py` for `ver`."""
    return f'"""Written by the build (setup.py, agent/version.py); not in git."""\n__version__ = "{ver}"\n'


_PEP440 = re.compile(r"^(?P<base>\d+\.\d+\.\d+)(?P<pre>(a|b|rc)\d+)?(\.post(?P<post>\d+))?(\.dev(?P<dev>\d+))?"
                     r"(\+(?P<local>[A-Za-z0-9.]+))?$")


def rpm_version(ver: str) -> str:
    """The RPM Version for a PEP 440 `ver`, ordered as pip orders them (rpm >= 4.15: `~` sorts before, `^` after).

    `1.2.3` -> `1.2.3`; `1.2.3rc1` -> `1.2.3~rc1`; `1.2.3.dev2` -> `1.2.3~dev2`; `1.2.3.post4+gabc1234`
    -> `1.2.3^post4.gabc1234`; `1.2.3+dirty` -> `1.2.3^dirty`. Source: rpm's version comparison
    (rpm.org, "Package version comparison": tilde and caret). Raises ValueError for anything else.
    """
    m = _PEP440.match(ver)
    if m is None:
        raise ValueError(f"version {ver!r} is not a PEP 440 version this project makes (1.2.3, 1.2.3rc1, 1.2.3.post4+gsha)")
    out = m["base"] + (f"~{m['pre']}" if m["pre"] else "") + (f"~dev{m['dev']}" if m["dev"] else "")
    after = ([f"post{m['post']}"] if m["post"] else []) + ([m["local"]] if m["local"] else [])
    return out + ("^" + ".".join(after) if after else "")
