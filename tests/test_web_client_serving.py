"""The web client's files (web_client.py, web/): served at / with their content types and a strict
Content-Security-Policy beside the API's JSON 404s; no inline script; and no request to anything but the operations
of openapi/chat.yaml, with their parameters and form fields."""

import re
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from chat_server import models
from chat_server.app import SPEC, create_app
from chat_server.edge.web_client import CONTENT_TYPES, WEB, web_files

ROOT = Path(__file__).resolve().parent.parent
SPEC_DOC = yaml.safe_load(SPEC.read_text())
BASE = SPEC_DOC["servers"][0]["url"]
WEB_FILES = sorted(path.name for path in WEB.glob("*") if path.is_file())
SCRIPTS = {name: (WEB / name).read_text() for name in WEB_FILES if name.endswith(".js")}
# Every request in web/ is written `call("METHOD", "/api/...", {options})` or `stream("GET", "/api/...", {options})`
# in api.js, where the options name what goes out: `params: {...}` (the path's), `query: {...}`, `form: {...}` (the
# body's fields, multipart/form-data with `multipart: true`) and `idempotencyKey` (the Idempotency-Key header). Their
# values hold no braces, commas or parens.
API_CALL = re.compile(r'\b(?:call|stream)\("(GET|POST|PUT|DELETE)", "(/api[^"]*)"')
OPTION = re.compile(r"\b(params|query|form): \{([^{}]*)\}")
API_LITERAL = re.compile(r"""["'`]/api\b""")
NETWORK = ("fetch(", "EventSource(", "XMLHttpRequest", "WebSocket", "sendBeacon", "import(")
# An upload goes through XMLHttpRequest, the one request with progress events for what it sends.
API_NETWORK = ["fetch(", "EventSource(", "XMLHttpRequest"]
HTML_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(", "srcdoc")


@pytest.fixture
def web(tmp_path):
    """A plain client of the real app (the conftest clients check every answer against the spec, and these are not
    API answers)."""
    app = create_app(f"sqlite:///{tmp_path / 'chat.db'}", password_profile="cheapest")
    yield app.test_client()
    models.db.close_all()


def test_index_is_served_with_its_security_headers(web):
    response = web.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/app.js"></script>' in response.text
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["require-trusted-types-for"] == "'script'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"


def test_head_of_index_sends_the_headers_only(web):
    response = web.head("/")
    assert response.status_code == 200
    assert "content-security-policy" in response.headers
    assert response.content == b""


@pytest.mark.parametrize("byte_range", ["bytes=0-10", "bytes=99999-", "bytes=abc", "items=1-2", "bytes=5-1"])
def test_a_range_is_ignored_and_the_whole_file_sent(web, byte_range):
    """Never Starlette's plain-text 400 or 416 for a range it cannot serve: the files are small, so all of it."""
    whole = web.get("/")
    response = web.get("/", headers={"Range": byte_range, "If-Range": whole.headers.get("etag", "x")})
    assert response.status_code == 200
    assert response.content == whole.content
    assert "content-range" not in response.headers


@pytest.mark.parametrize("name", WEB_FILES)
def test_web_file_is_served_with_its_content_type(web, name):
    response = web.get(f"/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPES[Path(name).suffix]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (WEB / name).read_bytes()


@pytest.mark.parametrize(
    "path", ["/nope", "/favicon.ico", "/app.js/", "/web/app.js", "/../app.py", "/%2e%2e/app.py", "/index.htm"]
)
def test_unknown_path_still_gets_the_api_json_not_found(web, path):
    response = web.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}


def test_other_method_on_a_web_file_is_json_method_not_allowed(web):
    response = web.post("/", data={"name": "alice"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert set(response.json()) == {"error"}


def test_swagger_ui_keeps_its_place_without_the_client_policy(web):
    response = web.get("/api/ui/")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers


class _Markup(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict, str]] = []  # (tag, attributes, text right inside it)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs), ""))

    def handle_data(self, data):
        if self.tags:
            tag, attrs, text = self.tags[-1]
            self.tags[-1] = (tag, attrs, text + data)


def test_index_has_no_inline_script_style_or_event_handler():
    markup = _Markup()
    markup.feed((WEB / "index.html").read_text())
    scripts = [(attrs, text) for tag, attrs, text in markup.tags if tag == "script"]
    assert scripts and all(attrs.get("src") and not text.strip() for attrs, text in scripts)
    assert not [tag for tag, _, _ in markup.tags if tag == "style"]
    for tag, attrs, _ in markup.tags:
        assert not [name for name in attrs if name.startswith("on") or name == "style"], (tag, attrs)
        for name in ("src", "href", "action"):
            if name in attrs:
                assert attrs[name].lstrip("/") in WEB_FILES, f"<{tag} {name}={attrs[name]}> is not one of web/"


def test_scripts_call_only_operations_in_the_spec():
    calls = [(name, *match) for name, text in SCRIPTS.items() for match in API_CALL.findall(text)]
    assert calls, "api.js should spell out its requests"
    for name, method, path in calls:
        assert path.startswith(BASE + "/"), path
        operations = SPEC_DOC["paths"].get(path.removeprefix(BASE))
        assert operations is not None, f"{name}: {path} is not a path of openapi/chat.yaml"
        assert method.lower() in operations, f"{name}: {method} {path} is not an operation of openapi/chat.yaml"
    literals = sum(len(API_LITERAL.findall(text)) for text in SCRIPTS.values())
    assert literals == len(calls), "every /api path in web/ must be written as a call(...) or stream(...) in api.js"


def _resolve(node: dict) -> dict:
    """What a `$ref` of openapi/chat.yaml points to; the node itself when it is none."""
    while "$ref" in node:
        target = SPEC_DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _call_options(text: str, start: int) -> str:
    """The text of a call's arguments, from its opening parenthesis to the matching close."""
    opening = text.index("(", start)
    depth = 0
    for end in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            return text[opening + 1 : end]
    raise AssertionError(f"unclosed call at {start}")


def _sent(arguments: str) -> dict[str, set[str]]:
    """What a call sends: the names of its params, query and form, and whether it sends an Idempotency-Key."""
    sent = {"params": set(), "query": set(), "form": set(), "headers": set()}
    options = OPTION.findall(arguments)
    assert len(options) == len(re.findall(r"\b(?:params|query|form):", arguments)), f"not object literals: {arguments}"
    for option, body in options:
        for entry in filter(None, (part.strip() for part in body.split(","))):
            sent[option].add(re.match(r"\w+", entry).group())
    if re.search(r"\bidempotencyKey\b", arguments):
        sent["headers"].add("Idempotency-Key")
    return sent


def _expected(method: str, path: str) -> dict[str, tuple[set[str], set[str]]]:
    """What the operation takes, each as (all names, required names)."""
    path_item = SPEC_DOC["paths"][path.removeprefix(BASE)]
    operation = path_item[method.lower()]
    parameters = [_resolve(p) for p in path_item.get("parameters", []) + operation.get("parameters", [])]
    expected = {}
    for option, where in (("params", "path"), ("query", "query"), ("headers", "header")):
        named = [p for p in parameters if p["in"] == where]
        expected[option] = ({p["name"] for p in named}, {p["name"] for p in named if p.get("required")})
    content = operation.get("requestBody", {}).get("content", {})
    body = content.get("application/x-www-form-urlencoded") or content.get("multipart/form-data")
    schema = _resolve(body["schema"]) if body else {}
    expected["form"] = (set(schema.get("properties", {})), set(schema.get("required", [])))
    return expected


# Each request api.js spells out: its method, path and arguments, named after its function.
API_CALLS = [
    pytest.param(*match.groups(), _call_options(text, match.start()), id=names[-1])
    for text in SCRIPTS.values()
    for match in API_CALL.finditer(text)
    if (names := re.findall(r"export const (\w+)", text[: match.start()]))
]


@pytest.mark.parametrize(("method", "path", "arguments"), API_CALLS)
def test_script_sends_only_the_parameters_and_fields_of_its_operation(method, path, arguments):
    sent, expected = _sent(arguments), _expected(method, path)
    placeholders = set(re.findall(r"\{(\w+)\}", path))
    assert sent["params"] == placeholders == expected["params"][0], f"{method} {path} fills {sent['params']}"
    for option in ("query", "form", "headers"):
        known, required = expected[option]
        assert sent[option] <= known, f"{method} {path} sends {option} {sent[option] - known}, not in the spec"
        assert required <= sent[option], f"{method} {path} leaves out required {option} {required - sent[option]}"
    if SPEC_DOC["paths"][path.removeprefix(BASE)][method.lower()].get("requestBody", {}).get("required"):
        assert sent["form"], f"{method} {path} needs a form body"


def test_only_api_js_touches_the_network():
    for name, text in SCRIPTS.items():
        used = [primitive for primitive in NETWORK if primitive in text]
        if name == "api.js":
            assert text.count("fetch(") == 1 and text.count("new EventSource(") == 1
            assert text.count("new XMLHttpRequest(") == 1
            assert used == API_NETWORK
        else:
            assert used == [], f"{name} uses {used}; requests belong in api.js"
        assert "http://" not in text and "https://" not in text, f"{name} names another origin"


def test_scripts_never_write_html():
    for name, text in SCRIPTS.items():
        assert [sink for sink in HTML_SINKS if sink in text] == [], name


def test_no_web_file_is_served_inside_the_api(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "x.js").write_text("")
    assert set(web_files(tmp_path)) == {"/", "/index.html"}
    served = set(web_files())
    assert served == {"/", *(f"/{name}" for name in WEB_FILES)}
    assert [path for path in served if path == BASE or path.startswith(BASE + "/")] == []


def test_web_files_ship_in_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "chat_server.web" in setuptools["packages"]
    patterns = setuptools["package-data"]["chat_server.web"]
    assert [name for name in WEB_FILES if not any(fnmatch(name, pattern) for pattern in patterns)] == []
