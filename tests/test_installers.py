"""First runs of tests/install_*.sh rehearsed with stand-ins: the binary each looks for is missing, apt-get is a
stand-in that "installs" it, and the installed binary writes its version's first line, pauses, then writes many
more. Nothing is installed or uninstalled on the machine that runs them."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.lint_shell import shell_scripts

HERE = Path(__file__).resolve().parent
# script, the variable naming the binary it looks for, the version line the stand-in binary writes first
INSTALLERS = [
    pytest.param(HERE / "install_haproxy.sh", "HAPROXY", "HAProxy version 2.6.12-1+deb12u4", id="haproxy"),
    pytest.param(HERE / "install_chromium.sh", "CHROMIUM", "Chromium 156.0.8078.73 built on Debian", id="chromium"),
]
SLOW_BINARY = """#!/usr/bin/env bash
echo '{first_line}'
sleep 0.3
seq 1 20000 | sed 's/^/more version detail /'
"""
# Records each call; `install` copies the stand-in binary to where the script looks, unless told to install nothing.
APT_GET = """#!/usr/bin/env bash
echo "$*" >> '{log}'
if [ "$1" = install ] && [ '{installs}' = yes ]; then cp '{source}' '{target}'; fi
exit {status}
"""
requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="as any other user the installers only explain that root must install"
)


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def rehearse(tmp_path: Path, script: Path, variable: str, first_line: str, *, installs="yes", status=0, present=False):
    """Run `script` with its binary at a path under tmp_path (missing unless `present`) and a stand-in apt-get."""
    source = executable(tmp_path / "stand-in-binary", SLOW_BINARY.format(first_line=first_line))
    target = tmp_path / "bin" / "tool"
    target.parent.mkdir()
    if present:
        target.symlink_to(source)
    log = tmp_path / "apt-get.log"
    log.touch()
    apt_get = executable(
        tmp_path / "apt-get",
        APT_GET.format(log=log, installs=installs, source=source, target=target, status=status),
    )
    environment = {**os.environ, variable: str(target), "APT_GET": str(apt_get)}
    run = subprocess.run(["bash", str(script)], env=environment, capture_output=True, text=True, timeout=60)
    return run, log.read_text().splitlines()


@requires_root
@pytest.mark.parametrize(("script", "variable", "first_line"), INSTALLERS)
def test_installer_first_run_exits_0_when_the_version_comes_slowly(tmp_path, script, variable, first_line):
    run, apt_calls = rehearse(tmp_path, script, variable, first_line)
    assert run.returncode == 0, run.stderr
    assert run.stdout == first_line + "\n"
    assert apt_calls[0] == "update -qq"
    assert apt_calls[1].startswith("install -y -qq --no-install-recommends ")


@pytest.mark.parametrize(("script", "variable", "first_line"), INSTALLERS)
def test_installer_already_installed_calls_no_apt_get(tmp_path, script, variable, first_line):
    run, apt_calls = rehearse(tmp_path, script, variable, first_line, present=True, status=1)
    assert run.returncode == 0, run.stderr
    assert apt_calls == []


@requires_root
@pytest.mark.parametrize(("script", "variable", "first_line"), INSTALLERS)
def test_installer_fails_when_apt_get_leaves_no_binary(tmp_path, script, variable, first_line):
    run, apt_calls = rehearse(tmp_path, script, variable, first_line, installs="no")
    assert run.returncode == 1
    assert "still missing" in run.stderr
    assert len(apt_calls) == 2


@requires_root
@pytest.mark.parametrize(("script", "variable", "first_line"), INSTALLERS)
def test_installer_fails_when_apt_get_fails(tmp_path, script, variable, first_line):
    run, apt_calls = rehearse(tmp_path, script, variable, first_line, status=100)
    assert run.returncode == 100
    assert apt_calls == ["update -qq"]


def test_lint_shell_finds_every_installer():
    found = {path.name for path in shell_scripts()}
    assert {"install_haproxy.sh", "install_chromium.sh", "run"} <= found
