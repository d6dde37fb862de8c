"""Request validation as Connexion does it, with one validator per schema and form bodies that must be UTF-8."""

from collections import Counter
from urllib.parse import parse_qsl, unquote_to_bytes

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, UnsupportedMediaTypeProblem
from connexion.utils import is_null, is_nullable
from connexion.validators import VALIDATOR_MAP, FormDataValidator, MultiPartFormDataValidator, ParameterValidator
from connexion.validators.parameter import draft4_format_checker
from jsonschema import Draft4Validator, ValidationError
from starlette.datastructures import Headers

from .routes import VERBS, Routes

# The largest form in the spec has three fields; anything far beyond that is refused before it is parsed.
MAX_FORM_FIELDS = 20

_VALIDATORS: dict[int, tuple[dict, Draft4Validator]] = {}


def schema_validator(schema: dict, build) -> Draft4Validator:
    """One jsonschema validator per schema of the spec; Connexion would build a new one for every request."""
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = _VALIDATORS[id(schema)] = (schema, build())
    return cached[1]


class CachedParameterValidator(ParameterValidator):
    """Connexion's parameter validation, without a deep copy of the parameter and a new validator per value."""

    def validate_parameter(self, parameter_type, value, param, param_name=None):
        if value is None or (is_nullable(param) and is_null(value)):
            return super().validate_parameter(parameter_type, value, param, param_name)
        validator = schema_validator(
            param, lambda: Draft4Validator(param.get("schema", param), format_checker=draft4_format_checker)
        )
        try:
            validator.validate(value)
        except ValidationError as exception:
            return str(exception)
        return None


def form_charset(content_type: str) -> str:
    """The charset parameter of a Content-Type, lower-cased; Connexion misses it after "; "."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "charset":
            return value.strip().strip('"').lower()
    return "utf-8"


class CachedFormDataValidator(FormDataValidator):
    """Connexion's form body validation, with one validator per body schema instead of one per request, that also
    refuses bytes that are not UTF-8 (Starlette would quietly store U+FFFD in their place) and a field sent twice
    (Connexion would join `title=a&title=b` into "a,b"). With strict validation (app.py), a field the operation does
    not declare is refused too."""

    @property
    def _validator(self):
        return schema_validator(self._schema, lambda: FormDataValidator._validator.fget(self))

    async def _parse(self, stream, scope):
        charset = form_charset(Headers(scope=scope).get("content-type", ""))
        if charset.replace("-", "") not in ("utf8", "usascii", "ascii"):
            raise UnsupportedMediaTypeProblem(f"form bodies must be UTF-8, not {charset}")
        raw = b"".join([chunk async for chunk in stream])
        if raw.count(b"&") >= MAX_FORM_FIELDS:
            raise BadRequestProblem(detail=f"too many form fields: at most {MAX_FORM_FIELDS}")
        try:
            # The separators are ASCII, so the whole body decodes if and only if every name and value does.
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequestProblem(detail="the form body is not valid UTF-8") from None

        self._refuse_repeated_fields(raw)

        async def replay():
            yield raw

        return await super()._parse(replay(), scope)

    def _refuse_repeated_fields(self, raw: bytes) -> None:
        # Names are compared as the bytes they decode to; latin-1 maps every byte to one character.
        names = Counter(
            name for name, _ in parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
        )
        for name, count in names.items():
            name = name.encode("latin-1").decode("utf-8")
            if count > 1:  # a list (attachments) is one field too, comma-separated (`explode: false` in the spec)
                raise BadRequestProblem(detail=f"the form field {name} is sent {count} times; send it once")

    def _validate_params_strictly(self, data: dict) -> None:
        undeclared = sorted(set(data) - set(self._schema.get("properties", {})))
        if undeclared:
            raise BadRequestProblem(detail=f"this operation takes no form field {', '.join(undeclared)}")


class StreamedBody(MultiPartFormDataValidator):
    """A multipart/form-data body (an upload) is left for its handler to read as it arrives (multipart.py), which
    holds it to the same schema: Connexion would keep every byte of it in memory to validate it first."""

    async def wrap_receive(self, receive, *, scope):
        return receive, scope


def streamed_operations(spec: dict) -> set[tuple[str, str]]:
    """(method, path) of the operations that take multipart/form-data: uploads, whose bodies are streamed."""
    base = spec["servers"][0]["url"]
    return {
        (verb.upper(), base + path)
        for path, item in spec["paths"].items()
        for verb in VERBS
        if "multipart/form-data" in item.get(verb, {}).get("requestBody", {}).get("content", {})
    }


def path_parameters_per_operation(spec: dict) -> dict:
    """The spec with each path's parameters written into its operations instead, which OpenAPI defines as the same
    contract: an operation's own parameter of that name and place wins.

    Connexion appends a path's parameters to the operation's own list in place, once for each of its layers that
    reads the operation, so an operation with parameters of its own validated and bound `chat_id` six times on every
    request (a history page paid a tenth of its time for it). Written into the operation, they are read once.
    """

    def key(parameter: dict) -> tuple[str, str]:
        if "$ref" in parameter:
            parameter = spec["components"]["parameters"][parameter["$ref"].rpartition("/")[2]]
        return parameter["name"], parameter["in"]

    for item in spec["paths"].values():
        shared = item.pop("parameters", [])
        for verb in VERBS:
            if verb in item:
                own = item[verb].setdefault("parameters", [])
                declared = {key(parameter) for parameter in own}
                own.extend(parameter for parameter in shared if key(parameter) not in declared)
    return spec


CACHED_VALIDATORS = {
    "parameter": CachedParameterValidator,
    "body": MediaTypeDict(
        {
            **VALIDATOR_MAP["body"],
            "application/x-www-form-urlencoded": CachedFormDataValidator,
            "multipart/form-data": StreamedBody,
        }
    ),
}


class FormContentType:
    """Refuse a body sent without a Content-Type (415) on an operation that takes a form; Connexion would hand
    the raw bytes to the handler instead of validating them."""

    def __init__(self, app, routes: Routes):
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            if has_body and not headers.get("content-type"):
                operation = self.routes.operation(scope["path"], scope["method"])
                if operation is not None and "requestBody" in operation:
                    raise UnsupportedMediaTypeProblem(
                        "a form body needs Content-Type: application/x-www-form-urlencoded"
                    )
        await self.app(scope, receive, send)
