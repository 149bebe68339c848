"""scripts/release on a tagged copy of this tree: wheel, sdist, wheelhouse and RPM; the RPM installed into a
throwaway root (`rpm --root DIR --nodeps --noscripts -i`) answers --version and check-config; the wheelhouse
installs offline. Debian 12's rpm 4.18 and rpmlint 2.4 stand in for EL9's (no EL9 host can be had here).

Lab-marked: root (rpm --root writes files owned by root), rpmbuild, /usr/bin/python3.11 and, for the first
build, the package index (pip caches the wheels). About 1-2 minutes.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.dirname(os.path.dirname(sys.executable))
TAG = "9.8.7"
GIT = ["git", "-c", "user.name=vobox test", "-c", "user.email=test@example.org", "-c", "commit.gpgsign=false",
       "-c", "tag.gpgsign=false", "-c", "init.defaultBranch=main"]
VENV_DIR = "/opt/vobox-agent"


def _run(*args, timeout_s=600, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout_s, **kw)


def _tagged_copy(dest) -> str:
    """This tree as it is now (tracked and new files, not ignored ones) committed in a new repository, tagged vTAG."""
    files = _run("git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    for rel in filter(None, files.split("\0")):
        src = os.path.join(REPO, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "release"], ["tag", "-a", f"v{TAG}", "-m", TAG]):
        proc = _run(*GIT, "-C", str(dest), *step)
        assert proc.returncode == 0, proc.stderr
    return str(dest)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(the tagged copy, the directory scripts/release wrote its artefacts to)."""
    if os.geteuid() != 0:
        pytest.skip("rpm --root needs root")
    missing = [t for t in ("rpmbuild", "rpmlint", "rpm", "/usr/bin/python3.11", "git") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/setup installs them)")
    src = _tagged_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    env = {k: val for k, val in os.environ.items() if k != "VOBOX_AGENT_VERSION"}
    proc = _run("bash", os.path.join(src, "scripts", "release"), "--out", str(out), timeout_s=1500,
                env=dict(env, VOBOX_VENV=VENV))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "0 errors, 0 warnings" in proc.stderr, proc.stderr[-3000:]          # rpmlint, after the filters
    return src, out


@pytest.mark.lab
def test_release_makes_every_artefact_named_by_the_tag(release):
    _, out = release
    names = sorted(os.listdir(out))
    assert names == sorted(["SHA256SUMS", f"vobox_agent-{TAG}-py3-none-any.whl", f"vobox_agent-{TAG}.tar.gz",
                            f"vobox-agent-wheelhouse-{TAG}.tar.gz", f"vobox-agent-{TAG}-1.x86_64.rpm",
                            f"vobox-agent-{TAG}-1.src.rpm"]), names
    check = _run("sha256sum", "-c", "SHA256SUMS", cwd=str(out))
    assert check.returncode == 0 and check.stdout.count(": OK") == 5, check.stdout + check.stderr


@pytest.mark.lab
def test_release_refuses_an_untagged_head(release, tmp_path):
    src, _ = release
    (tmp_path / "src").mkdir()
    clone = tmp_path / "src" / "clone"
    assert _run("git", "clone", "-q", src, str(clone)).returncode == 0
    (clone / "CHANGELOG.md").write_text("changed\n")
    assert _run(*GIT, "-C", str(clone), "commit", "-qam", "after the tag").returncode == 0
    proc = _run("bash", str(clone / "scripts" / "release"), "--out", str(tmp_path / "out"),
                env=dict(os.environ, VOBOX_VENV=VENV))
    assert proc.returncode == 1 and "HEAD is not at a tag vX.Y.Z" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


@pytest.mark.lab
def test_wheelhouse_is_manylinux_2_34_or_older_and_cpython_311(release):
    _, out = release
    with tarfile.open(out / f"vobox-agent-wheelhouse-{TAG}.tar.gz") as tar:
        wheels = [os.path.basename(n) for n in tar.getnames() if n.endswith(".whl")]
    assert f"vobox_agent-{TAG}-py3-none-any.whl" in wheels
    assert {"cryptography", "scapy", "docker", "influxdb_client", "rich"} <= {w.split("-")[0] for w in wheels}
    for w in wheels:
        py, abi, plat = w.removesuffix(".whl").split("-")[-3:]
        assert plat == "any" or all(re.fullmatch(r"manylinux(_2_(\d+)|2014|2010|1)_x86_64", p) for p in
                                    plat.split(".")), w
        glibc = [int(g) for g in re.findall(r"manylinux_2_(\d+)", plat)]
        assert not glibc or min(glibc) <= 34, w
        assert abi in ("none", "abi3", "cp311"), w


@pytest.mark.lab
def test_rpm_metadata(release):
    _, out = release
    rpm = str(out / f"vobox-agent-{TAG}-1.x86_64.rpm")
    requires = _run("rpm", "-qp", "--requires", rpm).stdout.split("\n")
    assert "python3.11" in requires and "systemd" in requires
    # nothing from inside the venv leaks into the dependencies (its .so files, python3.11dist(...))
    assert not [r for r in requires if ".so" in r or "dist(" in r], requires
    flags = dict(line.split(" ", 1) for line in
                 _run("rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm).stdout.splitlines())
    assert flags["/etc/vobox-agent/agent.toml"] == "cn"                      # %config(noreplace)
    assert "/usr/lib/systemd/system/vobox-agent.service" in flags
    assert f"{VENV_DIR}/bin/vobox-agent" in flags and "/usr/bin/vobox-agent" in flags
    assert "/usr/share/vobox-agent/selinux/vobox_agent.te" in flags
    scripts = _run("rpm", "-qp", "--scripts", rpm).stdout
    assert "useradd -r -g vobox-agent" in scripts and "systemctl --no-reload preset vobox-agent.service" in scripts
    assert "systemctl try-restart vobox-agent.service" in scripts


@pytest.mark.lab
def test_rpm_installs_into_a_throwaway_root_and_runs(release, tmp_path):
    src, out = release
    root = tmp_path / "root"
    root.mkdir()
    # --noscripts: the scriptlets (useradd, systemctl) would run chrooted into an empty root without a shell
    proc = _run("rpm", "--root", str(root), "--nodeps", "--noscripts", "-i", str(out / f"vobox-agent-{TAG}-1.x86_64.rpm"))
    assert proc.returncode == 0, proc.stderr
    assert _run("rpm", "--root", str(root), "-q", "vobox-agent").stdout.strip() == f"vobox-agent-{TAG}-1.x86_64"
    venv = root / VENV_DIR.lstrip("/")
    script = venv / "bin" / "vobox-agent"
    assert script.read_text().splitlines()[0] == f"#!{VENV_DIR}/bin/python3.11"
    assert os.readlink(venv / "bin" / "python3.11") == "/usr/bin/python3.11"
    assert sorted(os.listdir(venv / "bin")) == ["python", "python3", "python3.11", "vobox-agent"]
    # the build root is in no installed file (scripts, activate, pyvenv.cfg, .pyc)
    leaks = _run("grep", "-rl", "vobox-release.", str(root)).stdout.split()
    assert not leaks, leaks[:10]
    config = root / "etc/vobox-agent/agent.toml"
    with open(os.path.join(src, "deploy", "agent.example.toml")) as f:
        assert config.read_text() == f.read()
    assert (config.stat().st_mode & 0o777, config.parent.stat().st_mode & 0o777) == (0o640, 0o750)
    # The installed venv's interpreter (the path on the host is root/...: its pyvenv.cfg is found next to it)
    py = str(venv / "bin" / "python3.11")
    env = {k: val for k, val in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "VOBOX_AGENT"))}
    ver = _run(py, str(script), "--version", env=env, cwd=str(tmp_path))
    assert ver.returncode == 0 and ver.stdout == f"vobox-agent {TAG}\n", ver.stdout + ver.stderr
    where = _run(py, "-c", "import agent, docker, scapy; print(agent.__file__, docker.__file__)", env=env,
                 cwd=str(tmp_path))
    assert where.returncode == 0 and all(p.startswith(str(venv)) for p in where.stdout.split()), where
    check = _run(py, str(script), "check-config", "-c", str(root / "etc/vobox-agent/agent.toml"), env=env,
                 cwd=str(tmp_path))
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.lab
def test_rpm_shared_objects_need_no_glibc_newer_than_2_34(release, tmp_path):
    """EL9 has glibc 2.34: every ELF object of the venv asks for GLIBC_2.34 or older (objdump -T)."""
    if shutil.which("objdump") is None:
        pytest.skip("objdump not installed (binutils)")
    _, out = release
    root = tmp_path / "root"
    root.mkdir()
    assert _run("rpm", "--root", str(root), "--nodeps", "--noscripts", "-i",
                str(out / f"vobox-agent-{TAG}-1.x86_64.rpm")).returncode == 0
    objs = [os.path.join(d, f) for d, _, fs in os.walk(root / VENV_DIR.lstrip("/")) for f in fs
            if ".so" in f and not os.path.islink(os.path.join(d, f))]
    assert len(objs) >= 3, objs
    newest = (0, 0)
    for obj in objs:
        syms = _run("objdump", "-T", obj).stdout
        for major, minor in re.findall(r"GLIBC_(\d+)\.(\d+)", syms):
            newest = max(newest, (int(major), int(minor)))
    assert (2, 17) <= newest <= (2, 34), newest


@pytest.mark.lab
def test_wheelhouse_installs_offline(release, tmp_path):
    """`pip install --no-index --find-links wheelhouse vobox-agent` into a fresh python3.11 venv: no index at all."""
    _, out = release
    with tarfile.open(out / f"vobox-agent-wheelhouse-{TAG}.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    venv = tmp_path / "venv"
    assert _run("/usr/bin/python3.11", "-m", "venv", str(venv)).returncode == 0
    env = {k: val for k, val in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "VOBOX_AGENT"))}
    env["PIP_CONFIG_FILE"] = os.devnull                                       # no index from any pip.conf either
    proc = _run(str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(tmp_path / "wheelhouse"),
                "--disable-pip-version-check", "vobox-agent", env=env)
    assert proc.returncode == 0, proc.stderr
    ver = _run(str(venv / "bin" / "vobox-agent"), "--version", env=env, cwd=str(tmp_path))
    assert ver.stdout == f"vobox-agent {TAG}\n", ver.stdout + ver.stderr


CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
BASE_TAG = "vobox-agent-base:bookworm"   # deploy/make-base-image.sh, as tests/agent/ops/test_image.py builds it


@pytest.fixture
def os_root(tmp_path):
    """A root file system with a shell, getent, useradd and /usr/bin/python3.11: the Debian base image, exported.

    It stands in for an EL9 root (none can be had here): what the scriptlets and the venv need of it is the same.
    """
    if shutil.which("docker") is None or _run("docker", "info").returncode != 0:
        pytest.skip("no Docker engine (scripts/setup starts dockerd)")
    if _run("docker", "image", "inspect", BASE_TAG).returncode != 0:
        made = _run(os.path.join(REPO, "deploy", "make-base-image.sh"), BASE_TAG, timeout_s=1800)
        assert made.returncode == 0, made.stderr[-2000:]
    root = tmp_path / "osroot"
    root.mkdir()
    ctr = _run("docker", "create", BASE_TAG, "true").stdout.strip()
    try:
        export = subprocess.Popen(["docker", "export", ctr], stdout=subprocess.PIPE)
        untar = _run("tar", "-x", "-C", str(root), stdin=export.stdout)
        export.wait(timeout=300)
        assert untar.returncode == 0 and export.returncode == 0, untar.stderr
    finally:
        _run("docker", "rm", "-f", ctr)
    assert (root / "usr/bin/python3.11").exists()
    yield root
    shutil.rmtree(root, ignore_errors=True)   # ~200 MB


@pytest.mark.lab
def test_rpm_scriptlets_user_and_config_in_a_real_root(release, os_root):
    """rpm -i WITH its scriptlets into a root that has a shell (chrooted by rpm): %pre makes the user and group
    before the files land, so the config is root:vobox-agent 0640; the agent runs at its real path, reads its
    config as vobox-agent; rpm -e keeps an edited config as .rpmsave."""
    _, out = release
    rpm = str(out / f"vobox-agent-{TAG}-1.x86_64.rpm")
    proc = _run("rpm", "--root", str(os_root), "--nodeps", "-i", rpm)      # --nodeps: the root's packages are debs
    assert proc.returncode == 0, proc.stderr
    assert "does not exist" not in proc.stderr, proc.stderr                 # the group existed when files landed
    user = _run(CHROOT, str(os_root), "getent", "passwd", "vobox-agent").stdout.strip().split(":")
    assert user[0] == "vobox-agent" and user[5] == "/var/lib/vobox-agent" and user[6] == "/sbin/nologin", user
    assert int(user[2]) < 1000                                              # a system user (useradd -r)
    owner = _run(CHROOT, str(os_root), "stat", "-c", "%U:%G %a", "/etc/vobox-agent", "/etc/vobox-agent/agent.toml")
    assert owner.stdout.split("\n")[:2] == ["root:vobox-agent 750", "root:vobox-agent 640"], owner.stdout
    ver = _run(CHROOT, str(os_root), "/usr/bin/vobox-agent", "--version")
    assert ver.returncode == 0 and ver.stdout == f"vobox-agent {TAG}\n", ver.stdout + ver.stderr
    as_agent = [CHROOT, "--userspec=vobox-agent:vobox-agent", str(os_root)]
    check = _run(*as_agent, "/opt/vobox-agent/bin/vobox-agent", "check-config", "-c", "/etc/vobox-agent/agent.toml",
                 env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/"})
    # read as the agent's user, in a root without virsh or an engine: the example passes on a bare host (issue 33.6)
    assert check.returncode == 0, check.stdout + check.stderr
    nobody = _run(CHROOT, "--userspec=nobody:nogroup", str(os_root), "/opt/vobox-agent/bin/vobox-agent",
                  "check-config", "-c", "/etc/vobox-agent/agent.toml", env={"PATH": "/usr/bin:/bin", "HOME": "/"})
    assert nobody.returncode != 0 and "ermission denied" in nobody.stdout + nobody.stderr, nobody
    (os_root / "etc/vobox-agent/agent.toml").write_text("# the site's edits\n")
    erase = _run("rpm", "--root", str(os_root), "-e", "vobox-agent")
    assert erase.returncode == 0, erase.stderr
    assert (os_root / "etc/vobox-agent/agent.toml.rpmsave").read_text() == "# the site's edits\n"
    assert not (os_root / "opt/vobox-agent/bin").exists()


@pytest.mark.lab
def test_release_rebuilds_offline_from_a_wheelhouse(release, tmp_path):
    """scripts/release --wheels DIR --no-rpm with every index and proxy pointed at a closed loopback port."""
    src, out = release
    with tarfile.open(out / f"vobox-agent-wheelhouse-{TAG}.tar.gz") as tar:
        tar.extractall(tmp_path / "given", filter="data")
        first = sorted(os.path.basename(n) for n in tar.getnames() if n.endswith(".whl"))
    dead = "http://127.0.0.1:9"                                   # discard port: nothing listens, nothing leaves
    env = {k: val for k, val in os.environ.items() if not k.startswith(("PIP_", "VOBOX_AGENT"))}
    env.update(VOBOX_VENV=VENV, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=dead + "/simple", HTTP_PROXY=dead,
               HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead)
    proc = _run("bash", os.path.join(src, "scripts", "release"), "--out", str(tmp_path / "out"), "--no-rpm",
                "--wheels", str(tmp_path / "given" / "wheelhouse"), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "out")) == sorted(["SHA256SUMS", f"vobox_agent-{TAG}-py3-none-any.whl",
                                                          f"vobox_agent-{TAG}.tar.gz",
                                                          f"vobox-agent-wheelhouse-{TAG}.tar.gz"])
    with tarfile.open(tmp_path / "out" / f"vobox-agent-wheelhouse-{TAG}.tar.gz") as tar:
        assert sorted(os.path.basename(n) for n in tar.getnames() if n.endswith(".whl")) == first
