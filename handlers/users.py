"""Users: register, read, change and delete accounts."""

from .. import ratelimit
from ..models import User
from . import Conflict, Forbidden, NotFound, hashes, threaded, writes
from .auth import client_address, start_session


def _own_account(user: int, user_id: int) -> User:
    if user_id != user:
        if User.get_or_none(User.id == user_id) is None:
            raise NotFound(f"user {user_id} does not exist")
        raise Forbidden("you can only change your own account")
    return User.get_by_id(user)


def get_user(user: int, user_id: int, name: str | None = None) -> dict:
    found = User.by_name(name) if name is not None else User.get_or_none(User.id == user_id)
    if found is None:
        raise NotFound("no such user")
    return {"user": found.as_dict()}


@hashes
@writes
def register_user(user_id: int, body: dict):
    """Refused with 429 once an address has registered too often, before the password is hashed."""
    ratelimit.rate_limits.hit(ratelimit.rate_limits.register, client_address())
    if User.by_name(body["name"]) is not None:
        raise Conflict("that name is taken")
    created = User.register(body["name"], body["password"], body["email"])
    return start_session(created.id, 201)


@writes
def update_user(user: int, user_id: int, body: dict | None = None) -> dict:
    account = _own_account(user, user_id)
    body = body or {}
    name = body.get("name")
    if name is not None and name != account.name and User.by_name(name) is not None:
        raise Conflict("that name is taken")
    account.update_profile(name=name, email=body.get("email"))
    return {"status": "ok"}


@threaded
@writes
def delete_user(user: int, user_id: int) -> dict:
    _own_account(user, user_id).delete_account()
    return {"status": "ok"}
