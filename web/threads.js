// Threads: the summary a thread's root shows ("2 replies"), and the pane labelled "Thread" with the root and its
// replies, which stay out of the chat's history. The pane keeps the messages it shows; app.js renders each one.

import * as api from "./api.js";
import { el } from "./dom.js";

/** "1 reply", "3 replies". */
export function replyCount(thread) {
  const count = thread?.reply_count ?? 0;
  return count === 1 ? "1 reply" : `${count} replies`;
}

/** The root's summary, a button that opens its thread; null while the thread has no replies. */
export function threadButton(message, onOpen) {
  if (!message.thread?.reply_count) return null;
  const summary = replyCount(message.thread);
  const button = el("button", { type: "button", class: "thread-summary", "data-key": "thread" }, summary);
  button.addEventListener("click", onOpen);
  return button;
}

/**
 * The pane: `render(item, message)` fills a message's list item, `onError(element, error)` shows an API error. One
 * thread at a time, of the open chat: `chatId`, `rootId` and `messages` (the root and the replies shown, by id).
 */
export class ThreadPane {
  constructor({ panel, list, summary, render, onError }) {
    this.panel = panel;
    this.list = list;
    this.summary = summary;
    this.render = render;
    this.onError = onError;
    this.chatId = null;
    this.rootId = null;
    this.messages = new Map();
    this.deleted = new Set();
  }

  get isOpen() {
    return this.rootId !== null;
  }

  shows(chatId, rootId) {
    return this.chatId === chatId && this.rootId === rootId;
  }

  get(messageId) {
    return this.messages.get(messageId);
  }

  /** Show the thread at `rootId`: its root and its replies as the server has them now. */
  async open(chatId, rootId) {
    if (this.shows(chatId, rootId)) return true;
    this.close();
    this.chatId = chatId;
    this.rootId = rootId;
    this.panel.hidden = false;
    this.panel.parentElement.classList.add("thread-open");
    try {
      const page = await api.listThread(chatId, rootId);
      if (!this.shows(chatId, rootId)) return false;
      this.onError(null);
      this.show(page.root);
      for (const reply of page.messages) this.show(reply);
      return true;
    } catch (error) {
      if (this.shows(chatId, rootId)) this.onError(error);
      return false;
    }
  }

  close() {
    this.chatId = null;
    this.rootId = null;
    this.messages.clear();
    this.deleted.clear();
    this.list.replaceChildren();
    this.summary.textContent = "";
    this.panel.hidden = true;
    this.panel.parentElement.classList.remove("thread-open");
    this.onError(null);
  }

  /** Add or update the root or a reply, in id order (the root, whose id is the smallest, first). */
  show(message) {
    if (this.deleted.has(message.id)) return;
    this.messages.set(message.id, message);
    if (message.id === this.rootId) this.summary.textContent = replyCount(message.thread);
    let item = this.list.querySelector(`li[data-id="${message.id}"]`);
    if (!item) {
      item = el("li", { "data-id": message.id, class: "message" });
      let after = this.list.lastElementChild;
      while (after && Number(after.dataset.id) > message.id) after = after.previousElementSibling;
      this.list.insertBefore(item, after ? after.nextElementSibling : this.list.firstElementChild);
    }
    this.render(item, message);
  }

  remove(messageId) {
    this.deleted.add(messageId);
    this.messages.delete(messageId);
    this.list.querySelector(`li[data-id="${messageId}"]`)?.remove();
  }

  scrollToEnd() {
    const scroller = this.list.parentElement;
    scroller.scrollTop = scroller.scrollHeight;
  }
}
