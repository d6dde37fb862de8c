"""Conversation features over messages: replies and threads, mentions, reactions, direct chats, pins and each
member's alert settings."""
