"""The cookie security scheme: Connexion's apiKey handler, adjusted for two cookies that must belong together."""

import functools

from connexion.security import ApiKeySecurityHandler
from starlette.requests import cookie_parser

from .routes import resolve
from .session_check import SESSION_ENDED


class CookieApiKeyHandler(ApiKeySecurityHandler):
    """Connexion's apiKey security, adjusted in four ways.

    Cookies are read with Starlette's parser: SimpleCookie drops every cookie when any one is
    malformed. Whether a checker takes `request` or `required_scopes` is looked up once per
    checker, not with `inspect.signature` on every request. And a rejected cookie pair gets a
    message a client author can act on. And the checker the spec names is found with `resolve`.
    """

    @classmethod
    def _get_function(cls, security_definition, security_definition_key, environ_key, default=None):
        name = security_definition.get(security_definition_key)
        return resolve(name) if name else default

    @staticmethod
    def get_cookie_value(cookies, name):
        return cookie_parser(cookies or "").get(name)

    def check_api_key(self, api_key_info_func):
        return self._generic_check(api_key_info_func, SESSION_ENDED)

    @staticmethod
    @functools.cache
    def _accepts_kwarg(func, keyword: str) -> bool:
        return ApiKeySecurityHandler._accepts_kwarg(func, keyword)
