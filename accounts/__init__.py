"""Accounts: passwords and their hasher, credential lifetimes and the new-password policy, who sees an email, and
rate limits on guessing and registering."""
