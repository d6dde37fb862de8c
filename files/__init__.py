"""Files: what an upload is (its type, name and thumbnail), where its bytes are kept, and which uploads a user may
read, attach, make an avatar, or lose when nothing uses them any more."""
