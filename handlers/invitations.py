"""Invitations to chats: the ones waiting for you, and your answer to each."""

from ..accounts import consent
from ..core.errors import Forbidden, NotFound
from ..edge.offload import writes
from ..models import Invitation, User


def list_invitations(user: int) -> dict:
    return {"invitations": consent.pending_for(user)}


@writes
def accept_invitation(user: int, invitation_id: int) -> dict:
    own_invitation(user, invitation_id)
    chat_id = consent.accept(invitation_id, user, User.get_by_id(user).name)
    if chat_id is None:
        raise NotFound(f"invitation {invitation_id} is gone: its chat was deleted, or it was answered meanwhile")
    return {"status": "ok", "chat_id": chat_id}


@writes
def decline_invitation(user: int, invitation_id: int) -> dict:
    own_invitation(user, invitation_id)
    if not consent.decline(invitation_id, user):
        raise NotFound(f"invitation {invitation_id} was answered meanwhile")
    return {"status": "ok"}


def own_invitation(user: int, invitation_id: int) -> None:
    """404 for an invitation that is not pending, 403 for someone else's."""
    invitee = (
        Invitation.select(Invitation.user)
        .where(Invitation.id == invitation_id, Invitation.declined_at.is_null())
        .scalar()
    )
    if invitee is None:
        raise NotFound(f"invitation {invitation_id} does not exist")
    if invitee != user:
        raise Forbidden(f"invitation {invitation_id} is not yours")
