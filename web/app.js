// The chat client: log in or register, then the chat list, the open chat and its members, kept up to date by the
// event stream. All requests go through api.js; all text from the server is set as text (dom.js).

import * as api from "./api.js";
import { avatarControls, avatarElement } from "./avatars.js";
import { byId, el, enterSubmits, onSubmit, place, showError, timeElement } from "./dom.js";
import { PendingUploads, acceptFiles, asAttachment, attachmentList } from "./files.js";
import { LiveEvents } from "./live.js";
import { MentionSuggestions, mentionsMe } from "./mentions.js";
import { Pins } from "./pins.js";
import { IdleReporter, PresenceDots, Typists, TypingNotifier } from "./presence.js";
import { applyReaction, keepMine, pickerIsOpen, reactionBar } from "./reactions.js";
import { ReplyDraft, replyQuote } from "./replies.js";
import { ThreadPane, threadButton } from "./threads.js";

const NEAR_BOTTOM_PX = 48;
const NEAR_TOP_PX = 64;
const REFRESH_DELAY_MS = 30;
const MAX_PAGES_TO_FIND_HIT = 20;

const state = {
  me: null, // { id, name }
  chats: [], // the chat list as the server last sent it
  chatPages: 1,
  nextCursor: null,
  open: null, // the open chat: { id, title, kind, members, messages: Map, deleted: Set, edits: Map, oldest, ... }
  streamLive: false, // whether the event stream has been live since this login
  names: new Map(), // user id -> name
  avatars: new Map(), // user id -> avatar_url (null: none), once known
  lookups: new Map(), // user id -> the pending GET /api/user/{id}
  hits: { query: "", last: null },
};

const live = new LiveEvents({
  onEvent: (type, data) => handleEvent(type, data),
  onStatus: (status, detail) => showConnection(status, detail),
  onSessionEnded: (error) => sessionEnded(error),
});

// ---------------------------------------------------------------------------------------------------------------
// Who is logged in

// Counts logins and logouts here: an answer that arrives after one belongs to the session before, and is dropped.
let session = 0;
// The cookies are shared by every tab of this site, so a login or logout in one tab changes who the others are.
const sessionChanges = typeof BroadcastChannel === "function" ? new BroadcastChannel("chat.session") : null;

async function start() {
  wireWelcome();
  wireApp();
  sessionChanges?.addEventListener("message", () => checkSession());
  await checkSession();
}

/** Ask the server whose session the cookies hold, and show the app as that person, or the log-in page. */
async function checkSession() {
  const epoch = session;
  let user = null;
  try {
    ({ user } = await api.getSession());
  } catch (error) {
    if (error.status !== 401) {
      if (!state.me) showWelcome(error);
      return;
    }
  }
  const shown = !byId("welcome").hidden || !byId("app").hidden;
  if (epoch !== session || (shown && (user?.id ?? null) === (state.me?.id ?? null))) return; // still the same
  if (state.me) leaveApp();
  if (user) enterApp(user);
  else showWelcome();
}

function announceSessionChange() {
  sessionChanges?.postMessage("changed");
}

function showWelcome(error = null) {
  byId("app").hidden = true;
  byId("welcome").hidden = false;
  document.title = "Chat";
  showError(byId("login-form").querySelector(".error"), error);
  byId("login-name").focus();
}

function wireWelcome() {
  const loginForm = byId("login-form");
  onSubmit(loginForm, async () => {
    const error = loginForm.querySelector(".error");
    showError(error, null);
    try {
      await api.login(byId("login-name").value, byId("login-password").value);
      await loggedIn();
    } catch (failure) {
      showError(error, failure);
    }
  });
  const registerForm = byId("register-form");
  onSubmit(registerForm, async () => {
    const error = registerForm.querySelector(".error");
    showError(error, null);
    try {
      await api.register(byId("register-name").value, byId("register-password").value, byId("register-email").value);
      await loggedIn();
    } catch (failure) {
      showError(error, failure);
    }
  });
}

/** The login or registration set new cookies: the session's own answer says who they belong to. */
async function loggedIn() {
  const { user } = await api.getSession();
  for (const form of [byId("login-form"), byId("register-form")]) form.reset();
  if (state.me) leaveApp();
  enterApp(user);
  announceSessionChange();
}

function enterApp(user) {
  session += 1;
  const epoch = session;
  state.me = { id: user.id, name: user.name };
  state.streamLive = false;
  byId("me-name").textContent = user.name;
  byId("me-name").dataset.user = user.id;
  updatePerson(user);
  byId("welcome").hidden = true;
  byId("app").hidden = false;
  live.start();
  idleness.start();
  loadInvitations();
  api
    .getUser(user.id)
    .then(({ user: mine }) => {
      if (epoch !== session) return;
      byId("who-can-add-me").value = mine.who_can_add_me;
      updatePerson(mine);
    })
    .catch((error) => epoch === session && report(byId("app-error"), error));
  refreshChats().then(() => {
    const wanted = /^#chat\/(\d+)$/.exec(location.hash);
    if (epoch === session && wanted && !state.open) openChat(Number(wanted[1]), { focus: false });
  });
  byId("new-chat").focus();
}

function leaveApp() {
  session += 1;
  live.stop();
  idleness.stop();
  typing.reset(); // the session is over: a stop would only get a 401
  clearTimeout(refreshTimer);
  closeChat();
  typists.clear();
  presence.clear();
  Object.assign(state, { me: null, chats: [], chatPages: 1, nextCursor: null, open: null, streamLive: false });
  state.names.clear();
  state.avatars.clear();
  state.lookups.clear();
  pending.clear();
  byId("me-avatar").replaceChildren();
  byId("profile-status").textContent = "";
  byId("chats").replaceChildren();
  byId("invitations").replaceChildren();
  byId("invitations-panel").hidden = true;
  closeSearch();
  history.replaceState(null, "", location.pathname);
}

function sessionEnded(error) {
  leaveApp();
  showWelcome(error);
}

/** Show an API error where it belongs; a 401 anywhere means the session is over. */
function report(element, error) {
  if (error.status === 401) sessionEnded(error);
  else showError(element, error);
}

// ---------------------------------------------------------------------------------------------------------------
// Names

function nameOf(userId) {
  if (state.names.has(userId)) return state.names.get(userId);
  if (!state.lookups.has(userId)) {
    const lookup = api
      .getUser(userId)
      .then(({ user }) => user)
      .catch((error) => (error.status === 404 ? { id: userId, name: "deleted account", avatar_url: null } : null))
      .then((user) => {
        if (user === null) state.lookups.delete(userId);
        else updatePerson(user);
      });
    state.lookups.set(userId, lookup);
  }
  return `user ${userId}`;
}

/** A user's name or avatar is known, or changed: keep it, and change every place that shows it. */
function updatePerson(user) {
  const avatarChanged =
    state.avatars.get(user.id) !== (user.avatar_url ?? null) || state.names.get(user.id) !== user.name;
  state.names.set(user.id, user.name);
  state.avatars.set(user.id, user.avatar_url ?? null);
  for (const node of document.querySelectorAll(`[data-user="${user.id}"]`)) node.textContent = user.name;
  if (avatarChanged) {
    for (const node of document.querySelectorAll(`[data-avatar="${user.id}"]`)) {
      node.replaceWith(avatarOf(user.id, node.classList.contains("large") ? "large" : "small"));
    }
  }
  if (state.me?.id === user.id) {
    state.me.name = user.name;
    byId("me-avatar").replaceChildren(avatarOf(user.id, "large"));
    byId("remove-avatar").hidden = !user.avatar_url;
  }
}

/** A user's avatar as far as it is known (initials until then), kept up to date by updatePerson. */
function avatarOf(userId, size = "small") {
  const name = state.names.get(userId) ?? nameOf(userId);
  return avatarElement(userId, name, state.avatars.get(userId) ?? null, size);
}

/** A span with a user's name, filled in once the name is known. */
function userName(userId, className = "sender") {
  return el("span", { class: className, "data-user": userId, dir: "auto" }, nameOf(userId));
}

// ---------------------------------------------------------------------------------------------------------------
// The chat list

let refreshTimer = null;
let refreshing = null;
let refreshAgain = false;

/** Refresh the chat list soon; changes that arrive together cost one request. */
function refreshChatsSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshChats, REFRESH_DELAY_MS);
}

/** Refresh the chat list; a call while one is on its way runs once more after it, and waits for that. */
function refreshChats() {
  refreshAgain = true;
  refreshing ??= (async () => {
    while (refreshAgain) {
      refreshAgain = false;
      await loadChats();
    }
  })().finally(() => (refreshing = null));
  return refreshing;
}

async function loadChats() {
  const epoch = session;
  if (!state.me) return;
  try {
    let chats = [];
    let cursor;
    for (let page = 0; page < state.chatPages; page += 1) {
      const answer = await api.listChats(cursor);
      chats = chats.concat(answer.chats);
      cursor = answer.next_cursor ?? null;
      if (!cursor) break;
    }
    if (epoch !== session) return; // logged out (and maybe in as someone else) meanwhile
    state.chats = chats;
    state.nextCursor = cursor;
    showError(byId("chats-error"), null);
    renderChats();
  } catch (error) {
    if (epoch === session) report(byId("chats-error"), error);
  }
}

function isRead(chat) {
  // The open chat is read as its messages arrive; its counts would only flicker until the marker catches up.
  return Boolean(state.open && state.open.id === chat.id && document.visibilityState === "visible");
}

const unreadOf = (chat) => (isRead(chat) ? 0 : chat.unread_count);
const mentionsOf = (chat) => (isRead(chat) ? 0 : (chat.mention_count ?? 0));

/** What the page's title counts for a chat, as its notification setting says: all, mentions only, or nothing. */
function alertsOf(chat) {
  const muted = chat.muted_until && Date.parse(chat.muted_until) > Date.now();
  if (muted || chat.notify === "none") return 0;
  return chat.notify === "mentions" ? mentionsOf(chat) : unreadOf(chat);
}

function renderChats() {
  const list = byId("chats");
  const items = new Map([...list.children].map((item) => [Number(item.dataset.id), item]));
  let next = list.firstElementChild;
  for (const chat of state.chats) {
    let item = items.get(chat.id);
    items.delete(chat.id);
    if (!item) {
      item = el("li", { "data-id": chat.id }, el("button", { type: "button", class: "chat-button" }));
      item.firstElementChild.addEventListener("click", () => openChat(Number(item.dataset.id)));
    }
    fillChatItem(item, chat);
    place(list, item, next);
    next = item.nextElementSibling;
  }
  for (const gone of items.values()) gone.remove();
  byId("no-chats").hidden = state.chats.length > 0;
  byId("more-chats").hidden = !state.nextCursor;
  const alerts = state.chats.reduce((total, chat) => total + alertsOf(chat), 0);
  document.title = alerts ? `(${alerts}) Chat` : "Chat";
  if (state.open) {
    const chat = state.chats.find((candidate) => candidate.id === state.open.id);
    if (chat) {
      setTitle(chat.title);
      showKind(chat);
    }
  }
}

/**
 * Show a new message in the chat list at once, from its event: the chat moves to the top with it as its last
 * message, one more unread unless it is yours. The refresh that follows brings the server's own numbers.
 */
function showLastMessage(chatId, message) {
  const chat = state.chats.find((candidate) => candidate.id === chatId);
  if (!chat || (chat.last_message_id ?? 0) > message.id) return;
  chat.last_message = message.content;
  chat.last_message_time = message.time;
  chat.sender_id = message.sender_id;
  chat.last_message_id = message.id;
  if (message.sender_id !== state.me.id) chat.unread_count += 1;
  state.chats = [chat, ...state.chats.filter((other) => other !== chat)];
  renderChats();
}

function fillChatItem(item, chat) {
  const button = item.firstElementChild;
  const unread = unreadOf(chat);
  const isOpen = state.open?.id === chat.id;
  item.classList.toggle("unread", unread > 0);
  if (isOpen) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
  const preview =
    chat.last_message === null
      ? el("span", { class: "chat-last empty" }, "No messages yet")
      : el(
          "span",
          { class: "chat-last" },
          chat.sender_id === state.me.id ? el("span", { class: "sender" }, "You") : userName(chat.sender_id),
          ": ",
          chat.last_message === "" ? el("i", {}, "attachments") : el("bdi", {}, chat.last_message),
        );
  // Each text from the server in a bidi context of its own (dir="auto" or <bdi>): a bidi control inside a title or
  // a message cannot reorder what is around it.
  const parts = [el("span", { class: "chat-title", dir: "auto" }, chat.title)];
  if (chat.last_message_time) parts.push(timeElement(chat.last_message_time, "chat-time"));
  parts.push(preview);
  const badges = [];
  if (unread > 0) {
    const count = unread >= 999 ? "999+" : String(unread);
    badges.push(el("span", { class: "badge" }, count, el("span", { class: "visually-hidden" }, " unread")));
  }
  const mentions = mentionsOf(chat);
  if (mentions > 0) {
    const count = mentions >= 999 ? "999+" : String(mentions);
    const label = mentions === 1 ? " mention" : " mentions";
    badges.push(
      el(
        "span",
        { class: "badge mention" },
        el("span", { "aria-hidden": "true" }, "@"),
        count,
        el("span", { class: "visually-hidden" }, label),
      ),
    );
  }
  if (badges.length) parts.push(el("span", { class: "badges" }, ...badges.flatMap((badge) => [" ", badge])));
  button.replaceChildren(...parts);
}

// ---------------------------------------------------------------------------------------------------------------
// The open chat

/**
 * A direct chat is named after the other person, for each of its two people: it cannot be renamed or gain members.
 * The notification setting is each chat's own.
 */
function showKind(chat) {
  const direct = chat.kind === "direct";
  state.open.kind = chat.kind;
  for (const id of ["rename", "add-member"]) byId(id).hidden = direct;
  if (direct) for (const id of ["rename-form", "add-member-form"]) byId(id).hidden = true;
  if (chat.notify && document.activeElement !== byId("notify")) byId("notify").value = chat.notify;
}

function setTitle(title) {
  if (!state.open) return;
  state.open.title = title;
  byId("chat-title").textContent = title;
}

async function openChat(chatId, { focus = true } = {}) {
  if (state.open?.id === chatId) {
    if (focus) byId("message").focus();
    return;
  }
  closeChat();
  const known = state.chats.find((chat) => chat.id === chatId);
  state.open = {
    id: chatId,
    title: known?.title ?? "",
    kind: known?.kind ?? "group",
    members: [],
    messages: new Map(),
    deleted: new Set(),
    edits: new Map(), // edits of messages not shown yet: id -> the message as edited
    oldest: null,
    hasOlder: false,
    readUpTo: known?.last_read_id ?? 0,
    loadingOlder: false,
  };
  const open = state.open;
  history.replaceState(null, "", `#chat/${chatId}`);
  byId("nothing-open").hidden = true;
  byId("chat-notice").hidden = true;
  byId("chat").hidden = false;
  byId("members-panel").hidden = false;
  byId("chat-title").textContent = open.title;
  typists.show(chatId);
  // Who types there already: their next `start` may be 5 s off.
  api.listTyping(chatId).then(({ typing }) => typing.forEach((each) => typists.heard(each)), () => {});
  showKind(known ?? { kind: "group" });
  renderChats();
  if (focus) byId("message").focus();
  pins.load(chatId);
  try {
    const [page] = await Promise.all([api.listMessages(chatId), loadMembers(chatId)]);
    if (state.open !== open) return;
    showError(byId("history-error"), null);
    for (const message of page.messages) showMessage(message);
    open.hasOlder = page.messages.length === api.MESSAGE_PAGE;
    if (page.messages.length) open.oldest = page.messages[0].id;
    updateHistoryEdge();
    scrollToBottom();
    markRead();
    if (!known) refreshChatsSoon();
  } catch (error) {
    if (state.open === open) report(byId("history-error"), error);
  }
}

function closeChat(notice = null) {
  state.open = null;
  typing.stop();
  typists.show(null);
  thread.close();
  pins.reset();
  draft.cancel();
  byId("messages").replaceChildren();
  byId("members").replaceChildren();
  for (const id of ["rename-form", "add-member-form", "leave-confirm", "older", "history-start", "pins-panel"]) {
    byId(id).hidden = true;
  }
  for (const id of ["rename", "add-member", "leave", "pinned"]) byId(id).setAttribute("aria-expanded", "false");
  for (const id of ["history-error", "app-error"]) showError(byId(id), null);
  byId("members-status").textContent = "";
  byId("chat").hidden = true;
  byId("members-panel").hidden = true;
  byId("nothing-open").hidden = false;
  const shown = byId("chat-notice");
  shown.textContent = notice ?? "";
  shown.hidden = !notice;
  if (location.hash) history.replaceState(null, "", location.pathname);
}

function atBottom() {
  const history = byId("history");
  return history.scrollHeight - history.scrollTop - history.clientHeight < NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  const history = byId("history");
  history.scrollTop = history.scrollHeight;
}

function updateHistoryEdge() {
  const open = state.open;
  byId("older").hidden = !open.hasOlder;
  byId("history-start").hidden = open.hasOlder || open.messages.size === 0;
}

/** An RFC 3339 time in microseconds since 1970. The server leaves out a zero fraction, so the strings don't sort. */
function microseconds(timestamp) {
  const parts = /^(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/i.exec(timestamp);
  if (!parts) return Date.parse(timestamp) * 1000;
  return Date.parse(parts[1] + parts[3]) * 1000 + Number((parts[2] ?? "").padEnd(6, "0").slice(0, 6));
}

/** Whether version `a` of a message was edited later than version `b`. */
function editedLater(a, b) {
  return Boolean(a.edited_at) && (!b.edited_at || microseconds(a.edited_at) > microseconds(b.edited_at));
}

/**
 * Add or update a message in the open chat's log, in id order; a thread reply goes to the thread pane instead, when
 * it shows that thread. An event's message says nothing of your own reactions (`me` is false), so `fromEvent` keeps
 * them as the version shown has them.
 */
function showMessage(message, { fromEvent = false } = {}) {
  const open = state.open;
  if (message.thread_root_id) {
    showInThread(message, fromEvent);
    return;
  }
  if (open.deleted.has(message.id)) return;
  const edit = open.edits.get(message.id);
  if (edit) {
    open.edits.delete(message.id);
    if (editedLater(edit, message)) message = { ...edit, reactions: keepMine(edit.reactions, message.reactions) };
  }
  const known = open.messages.get(message.id);
  if (known && editedLater(known, message)) return; // a page read before an edit arrived must not undo it
  if (fromEvent) message = { ...message, reactions: keepMine(message.reactions, known?.reactions) };
  open.messages.set(message.id, message);
  if (thread.shows(open.id, message.id)) showInThread(message, fromEvent);
  const list = byId("messages");
  const existing = list.querySelector(`li[data-id="${message.id}"]`);
  if (existing) {
    fillMessage(existing, message);
    return;
  }
  const item = el("li", { "data-id": message.id, class: "message" });
  fillMessage(item, message);
  let after = list.lastElementChild;
  while (after && Number(after.dataset.id) > message.id) after = after.previousElementSibling;
  list.insertBefore(item, after ? after.nextElementSibling : list.firstElementChild);
}

/** A reply (or the root) of the thread the pane shows, added or updated there. */
function showInThread(message, fromEvent) {
  const rootId = message.thread_root_id ?? message.id;
  if (!thread.shows(state.open.id, rootId)) return;
  const known = thread.get(message.id);
  if (known && editedLater(known, message)) return;
  if (fromEvent) message = { ...message, reactions: keepMine(message.reactions, known?.reactions) };
  thread.show(message);
}

/** Change a message wherever it is shown (the history, the thread pane or both) with `change(message)`. */
function changeMessage(messageId, change) {
  const open = state.open;
  const shown = open.messages.get(messageId);
  if (shown) {
    const changed = change(shown);
    open.messages.set(messageId, changed);
    const item = byId("messages").querySelector(`li[data-id="${messageId}"]`);
    if (item) fillMessage(item, changed);
  }
  const threaded = thread.get(messageId);
  if (threaded) thread.show(change(threaded));
}

/** A message shown anywhere in the open chat, or undefined. */
function knownMessage(messageId) {
  return state.open?.messages.get(messageId) ?? thread.get(messageId);
}

/**
 * Fill a message's list item: who and when, the message it answers, its text and files, its thread's summary, its
 * reactions, and what you can do with it. `inThread` is for the thread pane, where it has no thread of its own to
 * open. Focus inside the item stays on the same control (each has a `data-key`), and an open picker stays open.
 */
function fillMessage(item, message, { inThread = false } = {}) {
  if (item.querySelector("form")) {
    item.dataset.stale = "yes"; // being edited: the form stays, and shows the new text when it closes
    return;
  }
  const focusKey = item.contains(document.activeElement) ? document.activeElement.dataset.key : undefined;
  const mine = message.sender_id === state.me.id;
  const mentioned = !mine && mentionsMe(message, state.me.id);
  const pinned = pins.has(message.id);
  item.classList.toggle("mine", mine);
  item.classList.toggle("mentioned", mentioned);
  item.dataset.pinned = String(pinned);
  const contentId = `${inThread ? "thread-" : ""}message-${message.id}-content`;
  const meta = el(
    "p",
    { class: "meta" },
    avatarOf(message.sender_id),
    author(message.sender_id),
    " ",
    timeElement(message.time, "sent"),
    message.edited_at ? el("span", { class: "edited", title: `edited ${message.edited_at}` }, " (edited)") : null,
    ...(mentioned ? [" ", el("span", { class: "tag" }, "mentions you")] : []),
    ...(pinned ? [" ", el("span", { class: "tag" }, "pinned")] : []),
  );
  const empty = message.content === ""; // files alone
  const content = el("p", { class: "content", id: contentId, dir: "auto", hidden: empty }, message.content);
  const parts = [
    meta,
    message.reply_to ? replyQuote(message.reply_to, author(message.reply_to.sender_id)) : null,
    content,
    attachmentList(message.attachments),
    inThread ? null : threadButton(message, () => openThread(message.id)),
    reactionBar(message.reactions, {
      onToggle: (emoji, add) => toggleReaction(item, message.id, emoji, add),
      pickerOpen: pickerIsOpen(item),
    }),
  ];
  const action = (key, text, onClick) => {
    const button = el("button", { type: "button", "aria-describedby": contentId, "data-key": key }, text);
    button.addEventListener("click", onClick);
    return button;
  };
  const actions = [];
  if (mine) {
    actions.push(action("edit", "Edit", () => startEdit(item, inThread)));
    actions.push(action("delete", "Delete", () => deleteMessage(item)));
  }
  if (!inThread) {
    actions.push(action("reply", "Reply", () => draft.start(message)));
    actions.push(action("thread-reply", "Reply in thread", () => openThread(message.id)));
  }
  actions.push(action("pin", pinned ? "Unpin" : "Pin", () => setPinned(item, message.id, !pinned)));
  parts.push(el("div", { class: "actions" }, ...actions));
  parts.push(el("p", { class: "error", role: "alert", hidden: true }));
  item.replaceChildren(...parts.filter(Boolean));
  if (focusKey !== undefined) {
    const same = [...item.querySelectorAll("[data-key]")].find((node) => node.dataset.key === focusKey);
    (same ?? item.querySelector(".add-reaction"))?.focus();
  }
}

/** Who wrote a message, as it shows: "You", or their name. */
function author(userId) {
  return userId === state.me.id ? el("span", { class: "sender" }, "You") : userName(userId);
}

/**
 * An edit from the stream changes a message that is shown. One that is not (older than the pages loaded, or on a
 * page still on its way) waits for its page, which may have been read before the edit.
 */
function applyEdit(message) {
  const open = state.open;
  if (message.thread_root_id) {
    showInThread(message, true);
    return;
  }
  if (thread.shows(open.id, message.id)) showInThread(message, true);
  if (open.messages.has(message.id)) {
    showMessage(message, { fromEvent: true });
    return;
  }
  const waiting = open.edits.get(message.id);
  if (open.deleted.has(message.id) || (waiting && editedLater(waiting, message))) return;
  open.edits.set(message.id, message);
}

function removeMessage(messageId) {
  const open = state.open;
  open.deleted.add(messageId);
  open.messages.delete(messageId);
  open.edits.delete(messageId);
  const focused = (list) => list.querySelector(`li[data-id="${messageId}"]`)?.contains(document.activeElement);
  const refocus = focused(byId("messages")) ? "message" : focused(byId("thread-messages")) ? "thread-message" : null;
  byId("messages").querySelector(`li[data-id="${messageId}"]`)?.remove();
  thread.remove(messageId);
  if (refocus) byId(refocus).focus();
  if (pins.has(messageId)) pins.changed(messageId, false);
  for (const [id, message] of open.messages) {
    if (message.reply_to?.id === messageId) {
      changeMessage(id, (shown) => ({ ...shown, reply_to: { ...shown.reply_to, snippet: null, deleted: true } }));
    }
  }
  updateHistoryEdge();
}

function newestId() {
  const last = byId("messages").lastElementChild;
  return last ? Number(last.dataset.id) : null;
}

/** Move the read marker to the newest message shown, when it is not there yet and the page is being looked at. */
async function markRead() {
  const open = state.open;
  const newest = newestId();
  if (!open || newest === null || newest <= open.readUpTo || document.visibilityState !== "visible") return;
  const before = open.readUpTo;
  open.readUpTo = newest;
  try {
    const marker = await api.markRead(open.id, newest);
    if (state.open === open) open.readUpTo = Math.max(open.readUpTo, marker.last_read_id);
    refreshChatsSoon();
  } catch (error) {
    if (open.readUpTo === newest) open.readUpTo = before; // try again with the next message or reconnect
    if (state.open === open) report(byId("history-error"), error);
  }
}

async function loadOlder() {
  const open = state.open;
  if (!open || !open.hasOlder || open.loadingOlder) return false;
  open.loadingOlder = true;
  const history = byId("history");
  try {
    const page = await api.listMessages(open.id, { before: open.oldest });
    if (state.open !== open) return false;
    showError(byId("history-error"), null);
    const fromBottom = history.scrollHeight - history.scrollTop;
    for (const message of page.messages) showMessage(message);
    if (page.messages.length) open.oldest = page.messages[0].id;
    open.hasOlder = page.messages.length === api.MESSAGE_PAGE;
    updateHistoryEdge();
    history.scrollTop = history.scrollHeight - fromBottom; // the messages in view stay in view
    return true;
  } catch (error) {
    if (state.open === open) report(byId("history-error"), error);
    return false;
  } finally {
    open.loadingOlder = false;
  }
}

/** Anything newer than the newest message shown, for when the stream goes live for the first time. */
async function catchUp() {
  const open = state.open;
  const newest = newestId();
  if (!open || newest === null) return;
  try {
    const page = await api.listMessages(open.id, { after: newest });
    if (state.open !== open) return;
    showError(byId("history-error"), null);
    const follow = atBottom();
    for (const message of page.messages) showMessage(message);
    if (follow) scrollToBottom();
    markRead();
  } catch (error) {
    if (state.open === open) report(byId("history-error"), error);
  }
}

async function loadMembers(chatId) {
  const epoch = session;
  let members;
  try {
    ({ members } = await api.listMembers(chatId));
  } catch (error) {
    if (epoch === session) throw error;
    return; // the session it was asked for is over; its 401 must not end the next one
  }
  if (epoch !== session || state.open?.id !== chatId) return;
  state.open.members = members;
  for (const member of members) updatePerson(member);
  byId("members").replaceChildren(...members.map(memberItem));
  presence.load(members.map((member) => member.id));
}

/**
 * A member, with their presence dot on their avatar, and "Message" (their direct chat) unless it is you. The
 * button's label is drawn by CSS from its aria-label, as the initials of an avatar are, and the dot has only its
 * aria-label, so the list's text stays the members' names.
 */
function memberItem(member) {
  const nameId = `member-${member.id}-name`;
  const name = el("bdi", { id: nameId, "data-user": member.id }, member.name);
  const face = el("span", { class: "face" }, avatarOf(member.id), presence.dot(member.id));
  if (member.id === state.me.id) return el("li", {}, face, name, el("span", { class: "you" }, " (you)"));
  const message = el("button", {
    type: "button",
    class: "direct",
    "aria-label": "Message",
    "aria-describedby": nameId,
  });
  message.addEventListener("click", () => openDirect(member.id));
  return el("li", {}, face, name, message);
}

// ---------------------------------------------------------------------------------------------------------------
// Editing and deleting your messages

function startEdit(item, inThread) {
  const open = state.open;
  const id = Number(item.dataset.id);
  const shownIn = () => (state.open !== open ? undefined : inThread ? thread.get(id) : open.messages.get(id));
  const message = shownIn();
  const area = el("textarea", { "aria-label": "Edit message", rows: 2, required: true, maxlength: 10000 });
  area.value = message.content;
  const form = el(
    "form",
    { class: "edit", method: "post" },
    area,
    el(
      "div",
      { class: "buttons" },
      el("button", { type: "submit" }, "Save"),
      el("button", { type: "button", "data-cancel": true }, "Cancel"),
    ),
    el("p", { class: "error", role: "alert", hidden: true }),
  );
  const finish = () => {
    form.remove();
    delete item.dataset.stale;
    const current = shownIn();
    if (current) {
      fillMessage(item, current, { inThread });
      item.querySelector(".actions button")?.focus();
    }
  };
  enterSubmits(area);
  onSubmit(form, async () => {
    const error = form.querySelector(".error");
    showError(error, null);
    try {
      const edited = await api.editMessage(open.id, message.id, area.value);
      if (state.open === open) changeMessage(edited.id, (shown) => (editedLater(shown, edited) ? shown : edited));
      finish();
    } catch (failure) {
      report(error, failure);
    }
  });
  form.querySelector("[data-cancel]").addEventListener("click", finish);
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") finish();
  });
  item.querySelector(".content").replaceWith(form);
  item.querySelector(".actions").hidden = true;
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
}

async function deleteMessage(item) {
  const open = state.open;
  const error = item.querySelector(".error");
  showError(error, null);
  try {
    await api.deleteMessage(open.id, Number(item.dataset.id));
    if (state.open === open) removeMessage(Number(item.dataset.id));
    refreshChatsSoon();
  } catch (failure) {
    report(error, failure);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reactions, replies, threads and pins

/** Add or take back your reaction; the answer holds the message's reactions as they are now. */
async function toggleReaction(item, messageId, emoji, add) {
  const open = state.open;
  showError(item.querySelector(".error"), null);
  try {
    const answer = add
      ? await api.addReaction(open.id, messageId, emoji)
      : await api.removeReaction(open.id, messageId, emoji);
    if (state.open === open) changeMessage(messageId, (message) => ({ ...message, reactions: answer.reactions }));
  } catch (failure) {
    report(item.querySelector(".error"), failure);
  }
}

async function setPinned(item, messageId, pinned) {
  showError(item.querySelector(".error"), null);
  try {
    await pins.set(messageId, pinned);
  } catch (failure) {
    report(item.querySelector(".error"), failure);
  }
}

/** The pins changed: each message shown whose "Pin" or "Unpin" is out of date is filled again. */
function showPinned() {
  if (!state.open) return;
  for (const item of document.querySelectorAll("#messages > li, #thread-messages > li")) {
    const id = Number(item.dataset.id);
    const message = knownMessage(id);
    if (message && item.dataset.pinned !== String(pins.has(id))) {
      fillMessage(item, message, { inThread: item.parentElement.id === "thread-messages" });
    }
  }
}

/** Open the thread at `rootId` in the pane, with focus in its message box. */
async function openThread(rootId, { focus = true } = {}) {
  const open = state.open;
  if (!open) return false;
  const opening = thread.open(open.id, rootId);
  if (focus) byId("thread-message").focus();
  const opened = await opening;
  if (opened && thread.shows(open.id, rootId)) thread.scrollToEnd();
  return opened;
}

function closeThread() {
  const rootId = thread.rootId;
  thread.close();
  const root = byId("messages").querySelector(`li[data-id="${rootId}"]`);
  (root?.querySelector('[data-key="thread"], [data-key="thread-reply"]') ?? byId("message")).focus();
}

/** "Message" on a member: the direct chat with them, created on first use, opens. */
async function openDirect(userId) {
  showError(byId("app-error"), null);
  try {
    const { id } = await api.openDirectChat(userId);
    await refreshChats();
    await openChat(id);
  } catch (failure) {
    report(byId("app-error"), failure);
  }
}

/** A message as the panel of pins shows it: who wrote it and its text. */
function pinnedSummary(message) {
  const mine = message.sender_id === state.me.id;
  const text = message.content === "" ? el("i", {}, "attachments") : el("bdi", {}, message.content);
  return [
    mine ? el("span", { class: "chat-title" }, "You") : userName(message.sender_id, "chat-title"),
    timeElement(message.time, "chat-time"),
    el("span", { class: "hit-text" }, text),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Invitations: adds by people this user has not said may add them at once, each to accept or decline

async function loadInvitations() {
  const epoch = session;
  if (!state.me) return;
  try {
    const { invitations } = await api.listInvitations();
    if (epoch !== session) return;
    showError(byId("invitations-error"), null);
    byId("invitations").replaceChildren(...invitations.map(invitationItem));
    byId("invitations-panel").hidden = invitations.length === 0;
  } catch (error) {
    if (epoch === session) report(byId("invitations-error"), error);
  }
}

function invitationItem(invitation) {
  updatePerson(invitation.inviter);
  const title = el("bdi", { class: "title" }, invitation.title);
  const inviter = el("bdi", { class: "sender" }, invitation.inviter.name);
  const text = el("p", { id: `invitation-${invitation.id}` }, inviter, " invites you to “", title, "”");
  const accept = el("button", { type: "button", "aria-describedby": text.id }, "Accept");
  const decline = el("button", { type: "button", "aria-describedby": text.id }, "Decline");
  const item = el("li", { "data-id": invitation.id }, text, el("div", { class: "buttons" }, accept, decline));
  accept.addEventListener("click", () => answerInvitation(item, invitation, true));
  decline.addEventListener("click", () => answerInvitation(item, invitation, false));
  return item;
}

async function answerInvitation(item, invitation, accepting) {
  const error = byId("invitations-error");
  showError(error, null);
  for (const button of item.querySelectorAll("button")) button.disabled = true;
  try {
    if (accepting) await api.acceptInvitation(invitation.id);
    else await api.declineInvitation(invitation.id);
  } catch (failure) {
    for (const button of item.querySelectorAll("button")) button.disabled = false;
    if (failure.status !== 404) return report(error, failure);
  }
  item.remove();
  byId("invitations-panel").hidden = byId("invitations").children.length === 0;
  if (accepting) {
    await refreshChats();
    if (state.chats.some((chat) => chat.id === invitation.chat_id)) openChat(invitation.chat_id);
  } else {
    byId("new-chat").focus();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Events from the stream

function handleEvent(type, data) {
  const open = state.open && state.open.id === data.chat_id ? state.open : null;
  switch (type) {
    case "message.created": {
      if (open && data.message.thread_root_id) {
        showMessage(data.message, { fromEvent: true }); // to the thread pane, when it shows that thread
        if (thread.shows(open.id, data.message.thread_root_id)) thread.scrollToEnd();
      } else if (open) {
        const follow = atBottom() || data.message.sender_id === state.me.id;
        showMessage(data.message, { fromEvent: true });
        if (follow) scrollToBottom();
        markRead();
      }
      if (!data.message.thread_root_id) showLastMessage(data.chat_id, data.message);
      typists.stopped(data.chat_id, data.message.sender_id); // sending ends typing, whatever else arrives first
      refreshChatsSoon();
      break;
    }
    case "message.edited":
      if (open) applyEdit(data.message);
      refreshChatsSoon();
      break;
    case "message.deleted":
      if (open) removeMessage(data.message_id);
      refreshChatsSoon();
      break;
    case "chat.renamed":
      if (open) setTitle(data.title);
      refreshChatsSoon();
      break;
    case "member.added":
      updatePerson(data.user);
      if (open) loadMembers(open.id).catch((error) => report(byId("app-error"), error));
      refreshChatsSoon();
      break;
    case "member.left":
      if (open && data.user_id === state.me.id) {
        closeChat(`You are no longer a member of “${open.title}”.`);
      } else if (open) {
        loadMembers(open.id).catch((error) => report(byId("app-error"), error));
      }
      refreshChatsSoon();
      break;
    case "chat.read":
      refreshChatsSoon();
      break;
    case "chat.invited":
      loadInvitations();
      break;
    case "user.updated":
      updatePerson(data.user);
      break;
    case "reaction.added":
    case "reaction.removed": {
      const mine = data.user_id === state.me.id;
      const added = type === "reaction.added";
      const react = (message) => ({ ...message, reactions: applyReaction(message.reactions, data.emoji, mine, added) });
      if (open) changeMessage(data.message_id, react);
      break;
    }
    case "thread.updated":
      if (open) changeMessage(data.message_id, (message) => ({ ...message, thread: data.thread }));
      break;
    case "mention":
      refreshChatsSoon();
      break;
    case "message.pinned":
    case "message.unpinned":
      if (open) pins.changed(data.message_id, type === "message.pinned");
      break;
    case "typing":
      if (data.user_id !== state.me.id) typists.heard(data);
      typing.heard(data.resend_in_ms);
      break;
    case "presence":
      presence.heard(data);
      break;
    case "reset":
      // What was missed cannot be replayed (our event id is too old, or unknown here): refetch the chats and the
      // open chat's messages, which now hold everything up to the reset; the stream goes on from there.
      if (state.open) {
        const { id } = state.open;
        const rootId = thread.rootId;
        const composing = document.activeElement === byId("message");
        closeChat();
        openChat(id, { focus: composing }).then(() => rootId !== null && openThread(rootId, { focus: false }));
      }
      refreshChatsSoon();
      break;
    case "ready":
      // Everything missed has been replayed. The first time, though, the stream started live with no replay, and
      // the chat list and messages fetched at login may be from just before it: fetch what is newer once.
      showConnection("live");
      loadInvitations(); // the whole list, as the stream (re)starts: a reset replays nothing
      // Presence is never replayed either: ask again for the members shown, and say again that this page is idle.
      if (state.open) presence.load(state.open.members.map((member) => member.id));
      idleness.restate();
      if (!state.streamLive) {
        state.streamLive = true;
        refreshChatsSoon();
        catchUp();
      }
      break;
  }
}

function showConnection(status, detail) {
  const texts = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    offline: "Offline",
  };
  const line = byId("connection");
  line.textContent = detail ? `${texts[status]} (${detail})` : texts[status];
  line.dataset.status = status;
}

// ---------------------------------------------------------------------------------------------------------------
// Search

async function runSearch(query, before) {
  const error = byId("search-form").querySelector(".error");
  showError(error, null);
  const epoch = session;
  try {
    const { messages } = await api.search(query, before);
    if (epoch !== session) return;
    const list = byId("search-hits");
    if (!before) list.replaceChildren();
    for (const hit of messages) list.append(searchHit(hit));
    state.hits = { query, last: messages.length ? messages[messages.length - 1].id : null };
    byId("search-results").hidden = false;
    byId("search-empty").hidden = list.children.length > 0;
    byId("more-hits").hidden = messages.length < api.SEARCH_PAGE;
  } catch (failure) {
    if (epoch === session) report(error, failure);
  }
}

function searchHit(hit) {
  const chat = state.chats.find((candidate) => candidate.id === hit.chat_id);
  const button = el(
    "button",
    { type: "button", class: "hit" },
    el("span", { class: "chat-title", dir: "auto" }, chat ? chat.title : `chat ${hit.chat_id}`),
    timeElement(hit.time, "chat-time"),
    el(
      "span",
      { class: "hit-text" },
      hit.sender_id === state.me.id ? el("span", { class: "sender" }, "You") : userName(hit.sender_id),
      ": ",
      el("bdi", {}, hit.content),
    ),
  );
  button.addEventListener("click", () => showHit(hit));
  return el("li", {}, button);
}

/** Open the hit's chat and bring the message into view, paging back to it when it is older than the first page. */
async function showHit(hit) {
  await openChat(hit.chat_id, { focus: false });
  if (hit.thread_root_id) {
    await openThread(hit.thread_root_id, { focus: false });
    spotlight(byId("thread-messages").querySelector(`li[data-id="${hit.id}"]`));
    return;
  }
  const open = state.open;
  for (let page = 0; page < MAX_PAGES_TO_FIND_HIT && open === state.open && !open.messages.has(hit.id); page += 1) {
    if (!(await loadOlder())) break;
  }
  spotlight(byId("messages").querySelector(`li[data-id="${hit.id}"]`));
}

/** Bring a message found (by a search, or in the pins) into view, marked, with focus on it. */
function spotlight(item) {
  if (!item) return;
  for (const other of document.querySelectorAll(".message.found")) other.classList.remove("found");
  item.classList.add("found");
  item.tabIndex = -1;
  item.scrollIntoView({ block: "center" });
  item.focus();
}

function closeSearch() {
  byId("search-results").hidden = true;
  byId("search-hits").replaceChildren();
  byId("search-form").reset();
  showError(byId("search-form").querySelector(".error"), null);
}

// ---------------------------------------------------------------------------------------------------------------
// The composer: text, files or both

let sendKey = null; // one key per text and files: sending them again after an error cannot store them twice
// The files chosen for the next message, uploaded as soon as they are chosen.
const pending = new PendingUploads(byId("attachments"), {
  onChange: () => {
    byId("message").required = pending.count === 0; // files alone are a message too
    sendKey = null;
  },
  onError: (error) => report(byId("composer").querySelector(".error"), error),
  onEmptied: () => byId("message").focus(),
});

// The thread pane, and the pins of the open chat.
const thread = new ThreadPane({
  panel: byId("thread-panel"),
  list: byId("thread-messages"),
  summary: byId("thread-summary"),
  render: (item, message) => fillMessage(item, message, { inThread: true }),
  onError: (error) => (error ? report(byId("thread-error"), error) : showError(byId("thread-error"), null)),
});
const pins = new Pins({
  list: byId("pins"),
  empty: byId("no-pins"),
  error: byId("pins-panel").querySelector(".error"),
  describe: pinnedSummary,
  onShow: (message) => state.open && showHit({ ...message, chat_id: state.open.id }),
  onChange: showPinned,
  onError: report,
});

// Who is typing in the open chat, this page's own typing, everyone's presence and this page's idleness.
const typists = new Typists({ line: byId("typing"), who: (userId) => userName(userId, "typist") });
const typing = new TypingNotifier();
const presence = new PresenceDots();
const idleness = new IdleReporter();

// The message the next one answers, quoted above the message box.
const draft = new ReplyDraft({
  preview: byId("reply-preview"),
  quote: byId("reply-quote"),
  textbox: byId("message"),
  who: author,
  onChange: () => (sendKey = null),
});

/** A message this page just sent, as the stream will bring it a moment later. */
function sentMessage(id, content, fields) {
  const time = new Date().toISOString();
  return {
    id,
    content,
    attachments: [],
    sender_id: state.me.id,
    time,
    edited_at: null,
    reply_to: null,
    thread_root_id: null,
    thread: null,
    reactions: [],
    mentions: [],
    mentions_all: false,
    ...fields,
  };
}

/** The names the `@` of a message box suggests: the open chat's other members. */
function mentionable() {
  const others = (state.open?.members ?? []).filter((member) => member.id !== state.me.id);
  return others.map((member) => state.names.get(member.id) ?? member.name);
}

function wireComposer() {
  const composer = byId("composer");
  const textbox = byId("message");
  const error = composer.querySelector(".error");
  textbox.addEventListener("input", () => {
    sendKey = null;
    if (state.open) typing.input(state.open.id, textbox.value);
  });
  new MentionSuggestions(textbox, byId("mention-options"), mentionable);
  enterSubmits(textbox);
  textbox.addEventListener("keydown", (event) => {
    if (event.key === "Escape") draft.cancel();
  });
  byId("cancel-reply").addEventListener("click", () => {
    draft.cancel();
    textbox.focus();
  });
  acceptFiles({
    button: byId("attach"),
    picker: byId("attach-files"),
    textbox,
    dropZone: byId("chat"),
    onFiles: (files) => {
      showError(error, null);
      pending.add(files);
    },
  });

  onSubmit(composer, async () => {
    showError(error, null);
    const open = state.open;
    const { entries, uploads } = await pending.ready(); // files still on their way go with the message
    const content = textbox.value; // white space only is a message too, as the API takes it
    if (content === "" && !uploads.length) return; // every file failed (each said why) and there is no text
    sendKey ??= api.newIdempotencyKey();
    const ids = uploads.length ? uploads.map((upload) => upload.id).join(",") : undefined;
    const replyTo = draft.replyTo;
    try {
      const message = { content: content === "" ? undefined : content, attachments: ids, replyTo: replyTo?.id };
      const { id } = await api.sendMessage(open.id, message, sendKey);
      sendKey = null;
      typing.reset(); // sending ended it on the server
      if (textbox.value === content) textbox.value = "";
      if (draft.replyTo === replyTo) draft.cancel();
      pending.discard(entries);
      if (state.open === open && !open.messages.has(id)) {
        // The stream brings the message as stored a moment later; show it at once meanwhile.
        showMessage(sentMessage(id, content, { attachments: uploads.map(asAttachment), reply_to: replyTo }));
        scrollToBottom();
      }
      if (state.open === open) open.readUpTo = Math.max(open.readUpTo, id);
    } catch (failure) {
      report(error, failure);
    }
  });
}

/** The thread pane's own message box, which posts in the thread it shows. */
function wireThreadComposer() {
  const composer = byId("thread-composer");
  const textbox = byId("thread-message");
  const error = composer.querySelector(".error");
  let key = null;
  textbox.addEventListener("input", () => (key = null));
  new MentionSuggestions(textbox, byId("thread-mention-options"), mentionable);
  enterSubmits(textbox);
  byId("close-thread").addEventListener("click", closeThread);
  byId("thread-panel").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.defaultPrevented && event.target.closest("form.edit") === null) closeThread();
  });
  onSubmit(composer, async () => {
    showError(error, null);
    const open = state.open;
    const rootId = thread.rootId;
    const content = textbox.value;
    key ??= api.newIdempotencyKey();
    try {
      const { id } = await api.sendMessage(open.id, { content, threadRootId: rootId }, key);
      key = null;
      if (textbox.value === content) textbox.value = "";
      if (thread.shows(open.id, rootId) && !thread.get(id)) {
        thread.show(sentMessage(id, content, { thread_root_id: rootId }));
        thread.scrollToEnd();
      }
    } catch (failure) {
      report(error, failure);
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Wiring

/** A button that shows a small form (or panel); Escape or Cancel hides it again and gives focus back. */
function disclosure(button, panel, { onOpen, focus }) {
  const hide = () => {
    panel.hidden = true;
    button.setAttribute("aria-expanded", "false");
    showError(panel.querySelector(".error"), null);
    button.focus();
  };
  button.addEventListener("click", () => {
    if (!panel.hidden) {
      hide();
      return;
    }
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    onOpen?.();
    (focus ?? panel.querySelector("input, textarea, button")).focus();
  });
  panel.querySelector("[data-cancel]")?.addEventListener("click", hide);
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") hide();
  });
  return hide;
}

function wireApp() {
  byId("logout").addEventListener("click", async () => {
    showError(byId("app-error"), null);
    try {
      await api.logout();
      leaveApp();
      showWelcome();
      announceSessionChange();
    } catch (error) {
      report(byId("app-error"), error);
    }
  });

  const newChatForm = byId("new-chat-form");
  const hideNewChat = disclosure(byId("new-chat"), newChatForm, {});
  let newChatKey = null;
  byId("new-chat-title").addEventListener("input", () => (newChatKey = null));
  onSubmit(newChatForm, async () => {
    const error = newChatForm.querySelector(".error");
    showError(error, null);
    newChatKey ??= api.newIdempotencyKey();
    try {
      const title = byId("new-chat-title").value;
      const { id } = await api.createChat(title, newChatKey);
      newChatKey = null;
      newChatForm.reset();
      hideNewChat();
      await refreshChats();
      await openChat(id);
    } catch (failure) {
      report(error, failure);
    }
  });

  byId("more-chats").addEventListener("click", () => {
    state.chatPages += 1;
    refreshChats();
  });

  const searchForm = byId("search-form");
  onSubmit(searchForm, () => runSearch(byId("search-query").value));
  byId("more-hits").addEventListener("click", () => runSearch(state.hits.query, state.hits.last));
  byId("close-search").addEventListener("click", () => {
    closeSearch();
    byId("search-query").focus();
  });

  const renameForm = byId("rename-form");
  const hideRename = disclosure(byId("rename"), renameForm, {
    onOpen: () => {
      byId("rename-title").value = state.open.title;
      byId("rename-title").select();
    },
  });
  onSubmit(renameForm, async () => {
    const error = renameForm.querySelector(".error");
    showError(error, null);
    try {
      const title = byId("rename-title").value;
      await api.renameChat(state.open.id, title);
      setTitle(title);
      hideRename();
      refreshChatsSoon();
    } catch (failure) {
      report(error, failure);
    }
  });

  const history = byId("history");
  history.addEventListener("scroll", () => {
    if (history.scrollTop < NEAR_TOP_PX) loadOlder();
  });
  byId("older").addEventListener("click", () => loadOlder());

  wireComposer();
  wireThreadComposer();

  disclosure(byId("pinned"), byId("pins-panel"), {
    onOpen: () => pins.load(state.open.id),
    focus: byId("pins-panel"),
  });

  const notify = byId("notify");
  notify.addEventListener("change", async () => {
    const open = state.open;
    showError(byId("app-error"), null);
    try {
      const settings = await api.updateChatSettings(open.id, notify.value);
      const chat = state.chats.find((candidate) => candidate.id === open.id);
      if (chat) Object.assign(chat, settings);
      renderChats();
    } catch (failure) {
      report(byId("app-error"), failure);
    }
  });

  const addForm = byId("add-member-form");
  const hideAdd = disclosure(byId("add-member"), addForm, {
    onOpen: () => (byId("members-status").textContent = ""),
  });
  let addKey = null;
  byId("member-name").addEventListener("input", () => (addKey = null));
  onSubmit(addForm, async () => {
    const error = addForm.querySelector(".error");
    showError(error, null);
    const open = state.open;
    const name = byId("member-name").value;
    addKey ??= api.newIdempotencyKey();
    try {
      const answer = await api.addMember(open.id, name, addKey);
      addKey = null;
      addForm.reset();
      hideAdd();
      byId("members-status").textContent =
        answer.status === "invited" ? `Invited ${name}. They join once they accept.` : `Added ${name}.`;
      await loadMembers(open.id);
    } catch (failure) {
      report(error, failure);
    }
  });

  const confirm = byId("leave-confirm");
  disclosure(byId("leave"), confirm, { focus: byId("leave-yes") });
  byId("leave-yes").addEventListener("click", async () => {
    const error = confirm.querySelector(".error");
    showError(error, null);
    const open = state.open;
    try {
      await api.leaveChat(open.id);
      closeChat(`You left “${open.title}”.`);
      await refreshChats();
      byId("new-chat").focus();
    } catch (failure) {
      report(error, failure);
    }
  });

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") markRead();
    else typing.stop();
  });

  avatarControls({
    setButton: byId("set-avatar"),
    removeButton: byId("remove-avatar"),
    picker: byId("avatar-file"),
    progress: byId("avatar-progress"),
    status: byId("profile-status"),
    userId: () => state.me?.id,
    onUser: (user) => updatePerson(user),
    onError: (failure) => (failure ? report(byId("app-error"), failure) : showError(byId("app-error"), null)),
  });

  const whoCanAddMe = byId("who-can-add-me");
  whoCanAddMe.addEventListener("change", async () => {
    showError(byId("app-error"), null);
    try {
      await api.setWhoCanAddMe(state.me.id, whoCanAddMe.value);
    } catch (failure) {
      report(byId("app-error"), failure);
    }
  });
}

start();
