"""The error types every layer may raise; the edge renders them as {"error": "<what was wrong>"} (edge/responses.py)."""


class ApiError(Exception):
    """An error a client caused, or must wait out; the edge turns it into {"error": message} with this status."""

    status = 400

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.headers = {} if retry_after is None else {"Retry-After": str(retry_after)}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class RangeNotSatisfiable(ApiError):
    """A download's range starts past the end: the answer says how large the file is (Content-Range)."""

    status = 416

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.headers = {"Content-Range": f"bytes */{size}"}


class TooManyRequests(ApiError):
    status = 429


class Unavailable(ApiError):
    status = 503
