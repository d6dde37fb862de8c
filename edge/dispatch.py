"""How Connexion calls a handler: through decorators built once per operation, not on every request.

Connexion 3.3's `AsyncOperation.fn` builds a `StarletteDecorator` on every request, and that decorator decorates the
handler anew on every call: it reads the handler's signature (`inspect.signature`), wraps it three times and copies
its metadata each time. None of it depends on the request, which reaches the wrappers through Connexion's context
variables when they run. Built once, the same wrappers cost a history page a seventh less CPU (BENCHMARKS.md).
What a handler receives and what it answers are Connexion's own, unchanged.
"""

import functools

import connexion
from connexion.apps.asynchronous import AsyncApi, AsyncOperation
from connexion.context import receive, scope
from connexion.decorators import StarletteDecorator
from connexion.decorators.parameter import (
    AsyncParameterDecorator,
    inspect_function_arguments,
    prep_kwargs,
    unwrap_decorators,
)


class OwnBodyParameters(AsyncParameterDecorator):
    """Connexion's parameters for a handler, but for one that reads its own body (offload.reads_own_body): its path
    and query parameters only, without the form Connexion would otherwise parse (and spool) first."""

    def __call__(self, function):
        if not getattr(function, "reads_own_body", False):
            return super().__call__(function)
        arguments, has_kwargs = inspect_function_arguments(unwrap_decorators(function))

        @functools.wraps(function)
        async def wrapper(request):
            kwargs = prep_kwargs(
                request,
                request_body=None,
                files={},
                arguments=arguments,
                has_kwargs=has_kwargs,
                sanitize=self.sanitize_fn,
            )
            return await function(**kwargs)

        return wrapper


class DecoratedOnce(StarletteDecorator):
    """Connexion's Starlette decorator, which decorates the handler when it is applied instead of per call."""

    @property
    def _parameter_decorator_cls(self):
        return OwnBodyParameters

    def __call__(self, function):
        decorated = self.decorate(function)

        @functools.wraps(function)
        async def wrapper(*args, **kwargs):
            request = self.framework.get_request(uri_parser=self.uri_parser, scope=scope, receive=receive)
            return await decorated(request)

        return wrapper


class OperationDecoratedOnce(AsyncOperation):
    @functools.cached_property
    def fn(self):
        return DecoratedOnce(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)


class DecoratedOnceApi(AsyncApi):
    def make_operation(self, operation) -> AsyncOperation:
        return OperationDecoratedOnce.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


def decorate_once(app: connexion.AsyncApp) -> None:
    """Make the APIs added to the app after this call decorate each handler once."""
    app._middleware_app.api_cls = DecoratedOnceApi
