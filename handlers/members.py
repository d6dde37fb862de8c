"""Chat membership: list members, and bring someone in, or invite them when they have not said you may."""

from ..accounts import consent, ratelimit
from ..conversations import direct
from ..core.errors import Conflict, NotFound
from ..core.times import utcnow
from ..edge.idempotency import idempotent
from ..edge.offload import writes
from ..models import Membership, User
from . import require_member


def list_members(user: int, chat_id: int) -> dict:
    require_member(chat_id, user)
    return {"members": Membership.members_of(chat_id)}


@writes
@idempotent
def add_member(user: int, chat_id: int, body: dict):
    require_member(chat_id, user)
    direct.refuse_if_direct(chat_id, "cannot gain members; start a chat of your own")
    newcomer = User.get_or_none(User.id == body["user_id"]) if "user_id" in body else User.by_name(body["name"])
    if newcomer is None:
        raise NotFound("no such user")
    if Membership.exists(chat_id, newcomer.id):
        raise Conflict(f"{newcomer.name} is already a member of chat {chat_id}")
    if consent.adds_at_once(user, newcomer):
        if not Membership.add(chat_id, newcomer.id, newcomer.name, user):
            changed_meanwhile(chat_id, user)
        return {"status": "ok"}, 201
    barred = consent.blocking(chat_id, newcomer.id, user, utcnow() - consent.DECLINE_BARS)
    if barred is not None:
        raise Conflict(f"{newcomer.name} cannot be invited: {barred}")
    ratelimit.rate_limits.hit(ratelimit.rate_limits.invite, str(user))
    invitation = consent.invite(chat_id, newcomer.id, user)
    if invitation is None:
        changed_meanwhile(chat_id, user)
    return {"status": "invited", "id": invitation["id"]}, 202


def changed_meanwhile(chat_id: int, user: int):
    require_member(chat_id, user)  # the adder left, or the chat went, since the check above
    raise Conflict(f"chat {chat_id} changed meanwhile; reload and retry")
