"""A person at the web client in a browser page (tests/test_web_client.py): the page's parts by their accessible
names, the actions a person takes there, and what the page must never do (dialogs, script errors, CSP reports,
accessibility violations)."""

import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    from playwright.sync_api import expect
except ImportError:  # the browser tests skip first
    expect = None


AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


@dataclass
class Person:
    name: str
    page: object
    dialogs: list = field(default_factory=list)
    page_errors: list = field(default_factory=list)
    csp_violations: list = field(default_factory=list)
    event_requests: list = field(default_factory=list)

    @property
    def chats(self):
        return self.page.get_by_role("list", name="Chats")

    def chat(self, title: str):
        """The chat list's item titled `title` (not one whose last message is from someone of that name)."""
        exactly = re.compile(f"^{re.escape(title)}$")
        return self.chats.get_by_role("listitem").filter(has=self.page.locator(".chat-title").filter(has_text=exactly))

    @property
    def invitations(self):
        return self.page.get_by_role("list", name="Invitations").get_by_role("listitem")

    def invitation(self, title: str):
        return self.invitations.filter(has=self.page.get_by_text(title, exact=True))

    @property
    def log(self):
        return self.page.get_by_role("log", name="Messages", exact=True)

    def message(self, text: str):
        """The log item whose message text is exactly `text` (white space collapsed, as Playwright compares)."""
        return self.log.get_by_role("listitem").filter(has=self.page.get_by_text(text, exact=True))

    @property
    def thread(self):
        """The thread pane, a complementary landmark labelled "Thread"."""
        return self.page.get_by_role("complementary", name="Thread")

    def thread_message(self, text: str):
        """The thread pane's item whose message text is exactly `text`."""
        return self.thread.get_by_role("listitem").filter(has=self.page.get_by_text(text, exact=True))

    @property
    def pins(self):
        """The list of the open chat's pinned messages, in the panel that "Pinned" opens."""
        return self.page.get_by_role("list", name="Pinned messages").get_by_role("listitem")

    def reaction(self, message, emoji: str, count: int):
        """A message's reaction button, named by its emoji and count."""
        return message.get_by_role("button", name=f"{emoji} {count}", exact=True)

    def react(self, text: str, emoji: str) -> None:
        """React to a message with "Add reaction" and the picker."""
        message = self.message(text)
        message.get_by_role("button", name="Add reaction", exact=True).click()
        message.get_by_role("group", name="Pick a reaction").get_by_role("button", name=emoji, exact=True).click()

    @property
    def attachments(self):
        """The files chosen for the next message, listed in the composer until it is sent."""
        return self.page.get_by_role("list", name="Attachments", exact=True).get_by_role("listitem")

    def attach(self, *files: dict) -> None:
        """Choose files with "Attach file" (each a dict of name, mimeType and buffer, as Playwright's set_files takes
        them) and wait until each is uploaded: listed, with its progress bar gone."""
        with self.page.expect_file_chooser() as chooser:
            self.button("Attach file").click()
        assert chooser.value.is_multiple()
        chooser.value.set_files(list(files))
        for file in files:
            item = self.attachments.filter(has_text=file["name"])
            expect(item).to_be_visible()
            expect(item.get_by_role("progressbar")).to_have_count(0)

    def set_avatar(self, file: dict) -> None:
        """Choose a file with "Set avatar"; what comes of it is for the caller to check."""
        with self.page.expect_file_chooser() as chooser:
            self.button("Set avatar").click()
        chooser.value.set_files(file)

    @property
    def members(self):
        return self.page.get_by_role("complementary").get_by_role("list", name="Members")

    def presence(self, name: str):
        """The presence dot on the avatar of member `name` in the open chat's list: an image named "online", "idle"
        or "offline"."""
        return self.members.get_by_role("listitem").filter(has_text=name).get_by_role("img")

    @property
    def typing(self):
        """The line under the log that says who else is typing in the open chat, a status (a polite live region)."""
        return self.page.get_by_role("status", name="Who is typing", exact=True)

    def button(self, name: str):
        return self.page.get_by_role("button", name=name, exact=True)

    def textbox(self, name: str):
        return self.page.get_by_role("textbox", name=name, exact=True)

    def send(self, text: str) -> None:
        self.textbox("Message").fill(text)
        self.textbox("Message").press("Enter")
        expect(self.message(text)).to_be_visible()

    def open_chat(self, title: str) -> None:
        self.chat(title).get_by_role("button").click()
        expect(self.page.get_by_role("heading", name=title, exact=True)).to_be_visible()

    def read_chat(self, title: str) -> None:
        """Open a chat with unread messages, and wait until the server has stored the read marker it moved."""
        with self.page.expect_response(lambda response: response.url.endswith("/read")) as marked:
            self.open_chat(title)
        assert (marked.value.request.method, marked.value.status) == ("POST", 200)

    def badge(self, title: str):
        return self.chat(title).get_by_text("unread")

    def add_member(self, name: str) -> None:
        self.button("Add member").click()
        self.textbox("Member name").fill(name)
        self.textbox("Member name").press("Enter")
        expect(self.members.get_by_role("listitem").filter(has_text=name)).to_be_visible()

    def new_chat(self, title: str) -> None:
        self.button("New chat").click()
        self.textbox("Title").fill(title)
        self.textbox("Title").press("Enter")
        expect(self.page.get_by_role("heading", name=title, exact=True)).to_be_visible()

    def watch(self) -> None:
        """Keep what the checks below need: dialogs (dismissed), script errors, CSP reports, event stream requests."""
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        self.page.on("console", self._console)
        self.page.on("request", self._request)

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text or "Trusted Type" in message.text:
            self.csp_violations.append(message.text)

    def _request(self, request) -> None:
        if "/api/events" in request.url:
            self.event_requests.append(request)

    def axe_violations(self, axe_script: Path) -> list[str]:
        """What axe-core finds against WCAG 2.0 and 2.1, A and AA, on the page as it is now, one line per violation."""
        if not self.page.evaluate("() => typeof window.axe === 'object'"):
            self.page.add_script_tag(path=axe_script)
        violations = self.page.evaluate(
            """async (tags) => {
                const { violations } = await axe.run(document, { runOnly: { type: "tag", values: tags } });
                const where = (nodes) => nodes.map((node) => node.target.join(" "));
                return violations.map(({ id, help, nodes }) => ({ id, help, nodes: where(nodes) }));
            }""",
            AXE_TAGS,
        )
        return [f"{v['id']} ({v['help']}): {', '.join(v['nodes'])}" for v in violations]

    def assert_clean(self) -> None:
        """No alert() or other dialog fired, no script error, nothing the Content-Security-Policy had to block."""
        assert self.dialogs == [], self.dialogs
        assert self.page_errors == [], self.page_errors
        assert self.csp_violations == [], self.csp_violations
