"""The contract: openapi/chat.yaml is valid and complete, and schemathesis finds nothing wrong, in-process."""

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate

import tests.schemathesis_hooks  # noqa: F401 - registers the fresh-user auth for every schemathesis test
from chat_server import models
from chat_server.app import create_app, resolve
from tests.conftest import SPEC_DOC, _resolve

VERBS = {"get", "put", "post", "delete", "patch"}
OPERATIONS = [
    (path, verb, operation)
    for path, item in SPEC_DOC["paths"].items()
    for verb, operation in item.items()
    if verb in VERBS
]


def test_spec_is_valid_openapi_3_0():
    assert SPEC_DOC["openapi"].startswith("3.0.")
    validate(SPEC_DOC)


@pytest.mark.parametrize("path, verb, operation", OPERATIONS, ids=[f"{v.upper()} {p}" for p, v, _ in OPERATIONS])
def test_operation_id_is_a_plain_name_that_resolves_to_its_handler(path, verb, operation):
    operation_id = operation["operationId"]
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", operation_id), operation_id
    controller = operation["x-openapi-router-controller"]
    assert controller.startswith("handlers.")
    assert callable(resolve(f"{controller}.{operation_id}"))


@pytest.mark.parametrize("path, verb, operation", OPERATIONS, ids=[f"{v.upper()} {p}" for p, v, _ in OPERATIONS])
def test_operation_has_a_summary_a_description_and_declared_tags(path, verb, operation):
    assert operation["summary"].strip()
    assert len(operation["description"].strip()) > len(operation["summary"])
    declared = {tag["name"]: tag for tag in SPEC_DOC["tags"]}
    assert operation["tags"] and all(declared[tag]["description"].strip() for tag in operation["tags"])


def test_info_names_a_license_and_a_contact():
    assert SPEC_DOC["info"]["license"]["name"]
    assert SPEC_DOC["info"]["contact"]["name"]


def test_links_name_existing_operations():
    ids = {op["operationId"] for _, _, op in OPERATIONS}
    links = [
        link
        for _, _, op in OPERATIONS
        for response in op["responses"].values()
        for link in _resolve(response).get("links", {}).values()
    ]
    assert links
    assert {link["operationId"] for link in links} <= ids


def test_operation_ids_are_unique():
    ids = [op["operationId"] for _, _, op in OPERATIONS]
    assert len(ids) == len(set(ids))


def _object_schemas(schema, seen=()):
    schema = _resolve(schema)
    if id(schema) in seen:
        return
    seen = (*seen, id(schema))
    if schema.get("type") == "object" or "properties" in schema:
        yield schema
    for child in schema.get("properties", {}).values():
        yield from _object_schemas(child, seen)
    if "items" in schema:
        yield from _object_schemas(schema["items"], seen)
    for key in ("allOf", "anyOf", "oneOf"):
        for child in schema.get(key, []):
            yield from _object_schemas(child, seen)


@pytest.mark.parametrize("path, verb, operation", OPERATIONS, ids=[f"{v.upper()} {p}" for p, v, _ in OPERATIONS])
def test_response_objects_declare_additional_properties(path, verb, operation):
    for status, response in operation["responses"].items():
        content = _resolve(response).get("content", {})
        # The event stream is the one body that is not JSON; its JSON form is declared beside it. A download's
        # bytes (200, 206) are the file's own type, and a 304 has no body.
        if path.startswith("/uploads/") and verb == "get" and status in ("200", "206", "304"):
            assert set(content) <= {"*/*"}, f"{status} is a file's bytes or nothing"
            continue
        if status == "204":  # typing: taken, nothing to say
            assert content == {}, f"{status} has no body"
            continue
        streams = {"text/event-stream"} if (verb, path, status) == ("get", "/events", "200") else set()
        assert set(content) == {"application/json"} | streams, f"{status} must be JSON"
        for schema in _object_schemas(content["application/json"]["schema"]):
            assert "additionalProperties" in schema, f"{verb.upper()} {path} {status}: {schema}"


@pytest.mark.parametrize("path, verb, operation", OPERATIONS, ids=[f"{v.upper()} {p}" for p, v, _ in OPERATIONS])
def test_every_operation_declares_its_error_statuses(path, verb, operation):
    responses = operation["responses"]
    # Any request may be malformed, too slow, too long or too large, or arrive when the server is at its cap.
    assert {"400", "408", "413", "414", "431", "500", "503"} <= set(responses)
    if operation.get("security", SPEC_DOC["security"]):
        assert "401" in responses
    if "requestBody" in operation:
        assert {"400", "415"} <= set(responses)


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'contract.db'}"


@pytest.fixture
def api_schema(database_url, monkeypatch):
    # The fuzzer guesses passwords and registers after every 401; tests/test_limits.py tests the limits themselves.
    for setting in ("CHAT_LOGIN_RATE", "CHAT_LOGIN_ADDRESS_RATE", "CHAT_REGISTER_RATE"):
        monkeypatch.setenv(setting, "off")
    app = create_app(database_url, validate_responses=True, password_profile="cheapest")
    yield schemathesis.openapi.from_asgi("/api/openapi.json", app)
    models.db.close_all()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_operation_conforms_to_contract(case):
    case.call_and_validate()


def test_stateful_workflows_conform_to_contract(api_schema, database_url):
    class Workflow(api_schema.as_state_machine()):
        def setup(self):
            with models.db.connection_context():
                models.db.drop_tables(list(reversed(models.MODELS)))
                models.db.create_tables(models.MODELS)

    Workflow.run(
        settings=settings(
            max_examples=40,
            stateful_step_count=8,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
