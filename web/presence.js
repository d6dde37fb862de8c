// Typing and presence, neither of them stored: "alice is typing…" under the open chat's log (others' `typing`
// events), this page's own typing in the message box (`POST /api/chats/{chat_id}/typing`), a dot beside each member
// that says whether they are online, idle or offline (`GET /api/presence`, then `presence` events), and this page's
// own idleness (`PUT /api/presence`). All of it is best effort: a request that fails is not retried, since what it
// said expires on the other side by itself.

import * as api from "./api.js";
import { el } from "./dom.js";

const RESEND_MS = 5_000; // the spec's `resend_in_ms`, until a typing event brings the server's own
const TYPING_PAUSE_MS = 5_000; // no input in the message box for this long ends the typing
const IDLE_AFTER_MS = 5 * 60_000; // no input on the page for this long: idle
const HIDDEN_IDLE_MS = 60_000; // the page hidden (another tab, minimised) for this long: idle
const IDLE_CHECK_MS = 15_000;
const MAX_ASKED = 100; // user ids one GET /api/presence takes
const STATES = new Set(["online", "idle", "offline"]);
const INPUT_EVENTS = ["keydown", "pointerdown", "pointermove", "wheel", "touchstart"];

/** What the typing line says: "alice is typing…", "alice and bob are typing…", "several people are typing…". */
export function typingLine(names) {
  if (names.length === 0) return [];
  if (names.length === 1) return [names[0], " is typing…"];
  if (names.length === 2) return [names[0], " and ", names[1], " are typing…"];
  return ["several people are typing…"];
}

/**
 * Who is typing in each chat, from the `typing` events, and the line under the open chat's log that names them.
 * `line` is a live region; its text changes only when the set of people typing in the open chat changes, so a
 * re-sent `start` says nothing again. `who(userId)` gives the node that names someone. Each typing ends with an
 * `active: false` event, that person's next message (stopped()), or `expires_in_ms` after the last `start`.
 */
export class Typists {
  constructor({ line, who }) {
    this.line = line;
    this.who = who;
    this.chats = new Map(); // chat id -> Map(user id -> the timer that ends it), in the order they started
    this.chatId = null; // the chat the line is about
    this.shown = ""; // the user ids the line names now
  }

  /** The line is about chat `chatId` now (null: none is open). */
  show(chatId) {
    this.chatId = chatId;
    this.render();
  }

  /** A `typing` event. */
  heard({ chat_id: chatId, user_id: userId, active, expires_in_ms: expiresInMs }) {
    if (!active) {
      this.stopped(chatId, userId);
      return;
    }
    const typing = this.chats.get(chatId) ?? new Map();
    clearTimeout(typing.get(userId));
    typing.set(userId, setTimeout(() => this.stopped(chatId, userId), expiresInMs));
    this.chats.set(chatId, typing);
    if (chatId === this.chatId) this.render();
  }

  /** `userId` is no longer typing in `chatId` (they sent a message, said so, or said nothing for too long). */
  stopped(chatId, userId) {
    const typing = this.chats.get(chatId);
    if (!typing?.has(userId)) return;
    clearTimeout(typing.get(userId));
    typing.delete(userId);
    if (typing.size === 0) this.chats.delete(chatId);
    if (chatId === this.chatId) this.render();
  }

  clear() {
    for (const typing of this.chats.values()) for (const timer of typing.values()) clearTimeout(timer);
    this.chats.clear();
    this.show(null);
  }

  render() {
    const ids = [...(this.chats.get(this.chatId)?.keys() ?? [])];
    const shown = ids.join(",");
    if (shown === this.shown) return;
    this.shown = shown;
    this.line.replaceChildren(...typingLine(ids.map((id) => this.who(id))));
  }
}

/**
 * This page's own typing: `input(chatId, text)` after each change of the message box sends `op=start` at once and
 * again at most every `resend_in_ms` while the input goes on; an emptied box, a pause of a few seconds or stop()
 * (another chat opened, the page hidden) sends `op=stop`. reset() forgets it without a request, for when the
 * server ended it itself (the message was sent) or the session is over. The server takes a `start` after a stop
 * (or a sent message) at once; it drops only a repeat within 2 s, which this never sends.
 */
export class TypingNotifier {
  constructor() {
    this.chatId = null; // the chat the message box is being typed in
    this.startedAt = 0; // when this spell of typing last sent `start`; 0 before it has
    this.pause = null;
    this.resendMs = RESEND_MS;
  }

  input(chatId, text) {
    if (text === "" || chatId !== this.chatId) this.stop();
    if (text === "") return;
    this.chatId = chatId;
    clearTimeout(this.pause);
    this.pause = setTimeout(() => this.stop(), TYPING_PAUSE_MS);
    if (this.startedAt && Date.now() - this.startedAt < this.resendMs) return;
    this.start(chatId);
  }

  start(chatId) {
    this.startedAt = Date.now();
    this.send(chatId, "start");
  }

  stop() {
    const chatId = this.chatId;
    const started = this.startedAt !== 0;
    this.reset();
    if (started) this.send(chatId, "stop");
  }

  reset() {
    clearTimeout(this.pause);
    this.pause = null;
    this.chatId = null;
    this.startedAt = 0;
  }

  /** The server's `resend_in_ms`, as a typing event from another member says it. */
  heard(resendMs) {
    if (resendMs > 0) this.resendMs = resendMs;
  }

  send(chatId, op) {
    api.setTyping(chatId, op).catch(() => {}); // lost: the others' pages expire it by themselves
  }
}

/**
 * Everyone's presence as far as this page knows it, and the dots that show it: dot(userId) is a small image named
 * "online", "idle" or "offline" (hidden while it is not known, or `unknown`), with the status text as its tooltip.
 * load(userIds) asks the server; heard(presence) takes a `presence` event. Each changes every dot of that user.
 */
export class PresenceDots {
  constructor() {
    this.states = new Map(); // user id -> {state, status_text}
    this.epoch = 0; // each clear(): an answer asked for before it is dropped
  }

  dot(userId) {
    const dot = el("span", { class: "presence", role: "img", "data-presence": userId });
    this.paint(dot, userId);
    return dot;
  }

  paint(dot, userId) {
    const known = this.states.get(userId);
    const state = STATES.has(known?.state) ? known.state : null;
    dot.hidden = state === null;
    dot.dataset.state = state ?? "unknown";
    if (state === null) {
      dot.removeAttribute("aria-label");
      dot.removeAttribute("title");
      return;
    }
    dot.setAttribute("aria-label", state);
    dot.title = known.status_text ? `${state}: ${known.status_text}` : state;
  }

  heard(presence) {
    this.states.set(presence.user_id, presence);
    for (const dot of document.querySelectorAll(`[data-presence="${presence.user_id}"]`)) {
      this.paint(dot, presence.user_id);
    }
  }

  async load(userIds) {
    const epoch = this.epoch;
    const ids = [...new Set(userIds)];
    for (let start = 0; start < ids.length; start += MAX_ASKED) {
      let answer;
      try {
        answer = await api.getPresence(ids.slice(start, start + MAX_ASKED));
      } catch {
        return; // the dots stay as they were; the next `presence` event or reconnect brings them up to date
      }
      if (epoch !== this.epoch) return;
      for (const presence of answer.presence) this.heard(presence);
    }
  }

  clear() {
    this.epoch += 1;
    this.states.clear();
  }
}

/**
 * This page's own presence: `PUT /api/presence state=idle` after 5 minutes without input (a key, the pointer, the
 * wheel) or a minute hidden, and `state=active` at the first input on the visible page after that. The server
 * counts a new stream as active, so restate() says idle again after a reconnect.
 */
export class IdleReporter {
  constructor() {
    this.idle = false;
    this.lastInput = 0;
    this.hiddenSince = null;
    this.timer = null;
    this.heardInput = () => this.input();
    this.visibilityChanged = () => this.visibility();
  }

  start() {
    this.idle = false;
    this.lastInput = Date.now();
    this.hiddenSince = document.visibilityState === "hidden" ? Date.now() : null;
    for (const type of INPUT_EVENTS) {
      document.addEventListener(type, this.heardInput, { capture: true, passive: true });
    }
    document.addEventListener("visibilitychange", this.visibilityChanged);
    this.timer = setInterval(() => this.check(), IDLE_CHECK_MS);
  }

  stop() {
    for (const type of INPUT_EVENTS) document.removeEventListener(type, this.heardInput, { capture: true });
    document.removeEventListener("visibilitychange", this.visibilityChanged);
    clearInterval(this.timer);
    this.timer = null;
    this.idle = false;
  }

  restate() {
    if (this.idle) this.say("idle");
  }

  input() {
    this.lastInput = Date.now();
    if (this.idle && document.visibilityState === "visible") {
      this.idle = false;
      this.say("active");
    }
  }

  visibility() {
    if (document.visibilityState === "hidden") {
      this.hiddenSince = Date.now();
    } else {
      this.hiddenSince = null;
      this.input();
    }
  }

  check() {
    const now = Date.now();
    const hidden = this.hiddenSince !== null && now - this.hiddenSince >= HIDDEN_IDLE_MS;
    if (!this.idle && (hidden || now - this.lastInput >= IDLE_AFTER_MS)) {
      this.idle = true;
      this.say("idle");
    }
  }

  say(state) {
    api.setPresence(state).catch(() => {}); // lost: a reconnect sets it right (active, then restate())
  }
}
