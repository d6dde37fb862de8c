"""Messages: read a chat's history or one message, send, and edit and delete your own."""

from ..conversations import posting
from ..core.errors import Forbidden, NotFound
from ..edge.idempotency import idempotent
from ..edge.offload import threaded, writes
from ..edge.session_check import SessionClaim, checks_session
from ..files import uploads
from ..models import Message
from ..streams import typists
from . import require_member


@checks_session
def list_messages(
    claim: SessionClaim, chat_id: int, limit: int = 100, before: int | None = None, after: int | None = None
):
    messages, found = Message.page(chat_id, claim.user_id, claim.lookup(), limit, before, after)
    claim.settle(found)
    if not messages:  # the page holds nothing, or the reader may not see it: which one, require_member tells
        require_member(chat_id, claim.user_id)
    return {"messages": messages}


@writes
@idempotent
def send_message(user: int, chat_id: int, body: dict):
    content, attachments = body.get("content", ""), body.get("attachments", [])
    if "reply_to" in body or "thread_root_id" in body:  # before they are looked up, which a non-member may not
        require_member(chat_id, user)
    post = posting.prepare(chat_id, content, body.get("reply_to"), body.get("thread_root_id"))
    message_id = posting.send(chat_id, user, post, lambda: uploads.send(chat_id, user, content, attachments, post))
    if message_id is None:
        require_member(chat_id, user)
        raise Forbidden(f"you were not a member of chat {chat_id} when the message arrived")
    typists.message_sent(chat_id, user)
    return {"status": "ok", "id": message_id, "mentions": post.mentions, "mentions_all": post.mentions_all}, 201


def get_message(user: int, chat_id: int, message_id: int) -> dict:
    require_member(chat_id, user)
    message = Message.one(chat_id, message_id, user)
    if message is None:
        raise NotFound(f"message {message_id} does not exist in chat {chat_id}")
    return message


@writes
def edit_message(user: int, chat_id: int, message_id: int, body: dict) -> dict:
    content = body["content"]
    edited = Message.edit(chat_id, message_id, user, content, posting.remention(chat_id, content))  # checks sender
    # and membership itself
    if edited is None:  # not an edit this user may make: which rule it broke, only now is asked
        if get_message(user, chat_id, message_id)["sender_id"] != user:
            raise Forbidden("you can only edit your own messages")
        raise NotFound(f"message {message_id} does not exist in chat {chat_id}")  # deleted meanwhile
    return edited


@threaded  # a thread's root takes its replies with it: a delete of unbounded size
@writes
def delete_message(user: int, chat_id: int, id: int) -> dict:  # noqa: A002 - the spec names it id
    require_member(chat_id, user)
    message = Message.get_or_none(Message.id == id, Message.chat == chat_id)
    if message is None:
        raise NotFound(f"message {id} does not exist in chat {chat_id}")
    if message.sender_id != user:
        raise Forbidden("you can only delete your own messages")
    posting.remove(message)
    return {"status": "ok"}
