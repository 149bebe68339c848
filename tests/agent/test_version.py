"""agent.version: the version from the git tag (a real git repository per test), its RPM form, the CLI's --version."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from agent import cli, version as v

GIT = ["git", "-c", "user.name=vobox test", "-c", "user.email=test@example.org", "-c", "commit.gpgsign=false",
       "-c", "tag.gpgsign=false", "-c", "init.defaultBranch=main"]


@pytest.mark.parametrize("describe, expected", [
    pytest.param("v1.2.3-0-gabc1234", "1.2.3", id="at-the-tag"),
    pytest.param("v1.2.3-4-gabc1234", "1.2.3.post4+gabc1234", id="after-the-tag"),
    pytest.param("v1.2.3-0-gabc1234-dirty", "1.2.3+dirty", id="at-the-tag-dirty"),
    pytest.param("v1.2.3-4-gabc1234-dirty", "1.2.3.post4+gabc1234.dirty", id="after-dirty"),
    pytest.param("v2.0.0rc1-0-g0123456789abcdef\n", "2.0.0rc1", id="pre-release"),
    pytest.param("v10.20.30-12-gdeadbeefcafe", "10.20.30.post12+gdeadbeefcafe", id="long-sha"),
])
def test_from_describe(describe, expected):
    assert v.from_describe(describe) == expected


@pytest.mark.parametrize("describe, message", [
    pytest.param("v1.2-0-gabc1234", "'1.2' is not a release version", id="two-parts"),
    pytest.param("v1.2.3-beta-0-gabc1234", "'1.2.3-beta' is not a release version", id="suffix"),
    pytest.param("abc1234", "expected vMAJOR.MINOR.PATCH-N-gSHA", id="no-tag-at-all"),
])
def test_from_describe_refuses(describe, message):
    with pytest.raises(ValueError, match=message):
        v.from_describe(describe)


def _git(repo, *args):
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A git repository with one commit and no tag."""
    r = tmp_path / "repo"
    r.mkdir()
    _git(r, "init", "-q")
    (r / "a.txt").write_text("a\n")
    _git(r, "add", "a.txt")
    _git(r, "commit", "-q", "-m", "one")
    return r


def test_version_follows_the_tags_of_a_checkout(repo, monkeypatch):
    monkeypatch.delenv(v.ENV_OVERRIDE, raising=False)
    assert v.from_git(str(repo)) is None                          # no tag: the fallback
    assert v.version(str(repo)) == v.FALLBACK_VERSION
    _git(repo, "tag", "-a", "v1.4.0", "-m", "v1.4.0")
    assert v.version(str(repo)) == "1.4.0"
    (repo / "a.txt").write_text("changed\n")                      # a tracked file changed: dirty
    assert v.version(str(repo)) == "1.4.0+dirty"
    _git(repo, "commit", "-q", "-am", "two")
    sha = _git(repo, "rev-parse", "--short", "HEAD")
    assert v.version(str(repo)) == f"1.4.0.post1+g{sha}"
    _git(repo, "tag", "v-not-ours")                              # not v[0-9]*: ignored
    _git(repo, "tag", "release-2")
    assert v.version(str(repo)) == f"1.4.0.post1+g{sha}"
    _git(repo, "tag", "v1.5")                                    # v[0-9]* but no release: said, not guessed
    with pytest.raises(ValueError, match="'1.5' is not a release version"):
        v.version(str(repo))


def test_a_tree_without_git_reads_the_sdists_version_file(tmp_path, monkeypatch):
    monkeypatch.delenv(v.ENV_OVERRIDE, raising=False)
    (tmp_path / "agent").mkdir()
    assert v.version(str(tmp_path)) == v.FALLBACK_VERSION
    (tmp_path / "agent" / "_version.py").write_text(v.module_text("3.1.4.post2+gabcdef0"))
    assert v.version(str(tmp_path)) == "3.1.4.post2+gabcdef0"


def test_override_wins_and_is_checked(repo, monkeypatch):
    _git(repo, "tag", "-a", "v1.4.0", "-m", "v1.4.0")
    monkeypatch.setenv(v.ENV_OVERRIDE, "2.0.1")
    assert v.version(str(repo)) == "2.0.1"
    monkeypatch.setenv(v.ENV_OVERRIDE, "2.0")
    with pytest.raises(ValueError, match=r"\$VOBOX_AGENT_VERSION '2.0' is not a PEP 440 version"):
        v.version(str(repo))


def test_cli_version_uses_the_rule_and_says_a_bad_one_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv(v.ENV_OVERRIDE, "7.8.9")
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == "vobox-agent 7.8.9\n"
    monkeypatch.setenv(v.ENV_OVERRIDE, "seven")
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "'seven' is not a PEP 440 version" in err, err


def test_building_the_parser_runs_no_git(monkeypatch):
    """Only --version asks git: every other command starts without a subprocess."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"subprocess while building the parser: {args}")
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert "--version" in cli.build_parser().format_help()


RPM_CASES = [
    pytest.param("1.2.3", "1.2.3", id="release"),
    pytest.param("1.2.3rc1", "1.2.3~rc1", id="rc"),
    pytest.param("1.2.3.dev2", "1.2.3~dev2", id="dev"),
    pytest.param("1.2.3.post4+gabc1234", "1.2.3^post4.gabc1234", id="post"),
    pytest.param("1.2.3+dirty", "1.2.3^dirty", id="dirty"),
]


@pytest.mark.parametrize("pep440, rpm", RPM_CASES)
def test_rpm_version(pep440, rpm):
    assert v.rpm_version(pep440) == rpm


def test_rpm_version_refuses():
    with pytest.raises(ValueError, match="'1.2-3' is not a PEP 440 version"):
        v.rpm_version("1.2-3")


def _rpm_cmp(a: str, b: str) -> int:
    out = subprocess.run(["rpm", "--eval", f'%{{lua: print(rpm.vercmp("{a}", "{b}"))}}'],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def test_rpm_orders_the_versions_as_pip_does():
    """rpm itself (rpm.vercmp) against packaging's PEP 440 order, over every pair."""
    if shutil.which("rpm") is None:
        pytest.skip("rpm not installed (scripts/setup installs it)")
    from packaging.version import Version
    versions = ["1.2.2", "1.2.3.dev2", "1.2.3rc1", "1.2.3", "1.2.3+dirty", "1.2.3.post4+gabc1234",
                "1.2.3.post12+gabc1234", "1.2.4rc1", "1.10.0"]
    for a in versions:
        for b in versions:
            pep = (Version(a) > Version(b)) - (Version(a) < Version(b))
            assert _rpm_cmp(v.rpm_version(a), v.rpm_version(b)) == pep, (a, b)


