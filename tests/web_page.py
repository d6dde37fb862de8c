"""A person at the web client in a browser page (tests/test_web_client.py): the page's parts by their accessible
names, the actions a person takes there, and what the page must never do (dialogs, script errors, CSP reports)."""

from dataclasses import dataclass, field

try:
    from playwright.sync_api import expect
except ImportError:  # the browser tests skip first
    expect = None


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
        return self.chats.get_by_role("listitem").filter(has=self.page.get_by_text(title, exact=True))

    @property
    def invitations(self):
        return self.page.get_by_role("list", name="Invitations").get_by_role("listitem")

    def invitation(self, title: str):
        return self.invitations.filter(has=self.page.get_by_text(title, exact=True))

    @property
    def log(self):
        return self.page.get_by_role("log", name="Messages")

    def message(self, text: str):
        """The log item whose message text is exactly `text` (white space collapsed, as Playwright compares)."""
        return self.log.get_by_role("listitem").filter(has=self.page.get_by_text(text, exact=True))

    @property
    def members(self):
        return self.page.get_by_role("complementary").get_by_role("list", name="Members")

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

    def assert_clean(self) -> None:
        """No alert() or other dialog fired, no script error, nothing the Content-Security-Policy had to block."""
        assert self.dialogs == [], self.dialogs
        assert self.page_errors == [], self.page_errors
        assert self.csp_violations == [], self.csp_violations
