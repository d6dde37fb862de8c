"""Users: register, read, change and delete accounts."""

from ..accounts import consent, deletion, passwords, ratelimit
from ..accounts.credentials import check_new_password
from ..accounts.privacy import shown_email
from ..core.errors import Conflict, NotFound
from ..edge.cookies import client_address, start_session
from ..edge.offload import hashes, threaded, writes
from ..models import User
from . import own_account


def get_user(user: int, user_id: int, name: str | None = None) -> dict:
    found = User.by_name(name) if name is not None else User.get_or_none(User.id == user_id)
    if found is None:
        raise NotFound("no such user")
    shown = {**found.as_dict(), "email": shown_email(user, found.id, found.email)}
    if found.id == user:
        shown["who_can_add_me"] = consent.who_can_add(found)
    return {"user": shown}


@hashes
@writes
def register_user(user_id: int, body: dict):
    """Refused with 429 once an address has registered too often, before the password is hashed."""
    ratelimit.rate_limits.hit(ratelimit.rate_limits.register, client_address())
    if User.name_taken(body["name"]):
        raise Conflict("that name is taken")
    check_new_password(body["password"], body["name"])
    created = passwords.register(body["name"], body["password"], body["email"])
    return start_session(created.id, 201)


@writes
def update_user(user: int, user_id: int, body: dict | None = None) -> dict:
    account = own_account(user, user_id)
    body = body or {}
    name = body.get("name")
    # Your own name in another case or look is yours to take: it only changes how it is shown.
    if name is not None and User.name_taken(name, other_than=account.id):
        raise Conflict("that name is taken")
    account.update_profile(name=name, email=body.get("email"), who_can_add_me=body.get("who_can_add_me"))
    return {"status": "ok"}


@threaded
@writes
def delete_user(user: int, user_id: int) -> dict:
    deletion.delete_account(own_account(user, user_id))
    return {"status": "ok"}
