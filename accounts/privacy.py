"""Who sees a user's email: `--email-visibility` (CHAT_EMAIL_VISIBILITY).

- `self`: only the user themself;
- `contacts` (the default): also the people who share a chat with them that they joined by themselves (created, or
  accepted an invitation to), who could ask them anyway; being added by someone makes no contacts;
- `all`: every logged-in user, as the seed API did, which lets anyone walk /api/user/1..N and harvest addresses.
"""

import os

from ..core.settings import choice
from ..models import Membership

CHOICES = ("self", "contacts", "all")
DEFAULT = "contacts"

visibility = DEFAULT


def email_visibility(env=os.environ) -> str:
    """The setting in the environment; ValueError for one that is not among CHOICES."""
    return choice(env, "CHAT_EMAIL_VISIBILITY", "--email-visibility", CHOICES, DEFAULT)


def configure(env=os.environ) -> None:
    global visibility
    visibility = email_visibility(env)


def shown_email(viewer_id: int, user_id: int, email: str) -> str | None:
    """The email as this viewer may see it: the address, or None."""
    if viewer_id == user_id or visibility == "all":
        return email
    if visibility == "contacts" and Membership.is_contact(user_id, viewer_id):
        return email
    return None
