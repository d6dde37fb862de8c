"""What `pip install` gives a user: one package, a `chat-server` that knows its version, and the spec inside."""

import os
import subprocess
import sys
import tomllib
from importlib.metadata import Distribution, version
from pathlib import Path

import pytest

import chat_server.app
from tests.live_server import chat_server_command

ROOT = Path(__file__).resolve().parent.parent


def test_version_flag_prints_the_distribution_version():
    printed = subprocess.run([*chat_server_command(), "--version"], capture_output=True, text=True, check=True)
    assert printed.stdout.strip() == f"chat-server {version('chat-server')}"


def test_served_spec_carries_the_distribution_version(app):
    assert app.test_client().get("/api/openapi.json").json()["info"]["version"] == version("chat-server")


@pytest.mark.wheel
def test_wheel_installs_one_package_with_its_spec():
    package_dir = Path(chat_server.app.__file__).parent
    if package_dir == ROOT and not os.environ.get("CHAT_REQUIRE_WHEEL"):
        pytest.skip("an editable install runs from the checkout; `tox -e wheel` runs this against the built wheel")
    assert package_dir != ROOT, f"imported from the checkout: {package_dir}"
    assert (package_dir / "openapi" / "chat.yaml").read_text() == (ROOT / "openapi" / "chat.yaml").read_text()
    assert Path(sys.prefix) in package_dir.parents
    # The installed metadata, not a chat_server.egg-info that a build left in the checkout (on sys.path here).
    (dist_info,) = package_dir.parent.glob("chat_server-*.dist-info")
    installed = Distribution.at(dist_info)
    assert installed.version == version("chat-server")
    top_level = {file.parts[0] for file in installed.files if file.parts[0] not in (dist_info.name, "..")}
    assert top_level == {"chat_server"}


# Directories of the checkout that are not part of the package: they never install.
NOT_INSTALLED = {"tests", "load", "docs", "build", "dist"}


def source_files() -> set[str]:
    """Every file the wheel must hold, relative to the package: each module of each Python package in the checkout
    (a directory with an __init__.py, or the root's own modules), the spec, the web client and the data files."""
    found = {path.name for path in ROOT.glob("*.py")}
    for init in ROOT.glob("*/**/__init__.py"):
        package = init.parent.relative_to(ROOT)
        if package.parts[0] in NOT_INSTALLED or any(part.startswith(".") for part in package.parts):
            continue
        found |= {str(package / path.name) for path in init.parent.glob("*.py")}
    found |= {
        str(path.relative_to(ROOT)) for folder in ("openapi", "web", "data") for path in (ROOT / folder).iterdir()
    }
    return {name for name in found if "__pycache__" not in name}


def test_every_package_of_the_checkout_is_listed_for_the_wheel():
    """setuptools drops a subpackage missing from `packages` silently; this says which one."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {str(Path(name).parent) for name in source_files()} - {"."}
    assert {f"chat_server.{folder.replace('/', '.')}" for folder in folders} - listed == set()


@pytest.mark.wheel
def test_wheel_holds_every_module_and_data_file():
    package_dir = Path(chat_server.app.__file__).parent
    if package_dir == ROOT and not os.environ.get("CHAT_REQUIRE_WHEEL"):
        pytest.skip("an editable install runs from the checkout; `tox -e wheel` runs this against the built wheel")
    assert sorted(name for name in source_files() if not (package_dir / name).is_file()) == []
