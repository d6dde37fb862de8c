"""What `pip install` gives a user: one package, a `chat-server` that knows its version, and the spec inside."""

import os
import subprocess
import sys
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
