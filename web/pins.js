// Pins: which messages of the open chat are pinned (for each message's "Pin" or "Unpin"), and the "Pinned" panel
// that lists them, newest pin first, kept up to date by the message.pinned and message.unpinned events.

import * as api from "./api.js";
import { el, showError } from "./dom.js";

export class Pins {
  /**
   * `list` and `empty` are the panel's list and its "nothing pinned" line, `error` its alert; `describe(message)`
   * gives the nodes that show a pinned message, `onShow(message)` brings it into view, `onChange()` hears every
   * change of which messages are pinned, `onError(element, error)` reports a failed request.
   */
  constructor({ list, empty, error, describe, onShow, onChange, onError }) {
    Object.assign(this, { list, empty, error, describe, onShow, onChange, onError });
    this.chatId = null;
    this.ids = new Set();
    this.asked = 0; // each load's number: an answer older than the last change is dropped
  }

  has(messageId) {
    return this.ids.has(messageId);
  }

  /** Load the pins of `chatId` (the chat just opened, or the same chat again after a change). */
  async load(chatId) {
    if (chatId !== this.chatId) this.reset(chatId);
    this.asked += 1;
    const asked = this.asked;
    try {
      const { pins } = await api.listPins(chatId);
      if (this.chatId !== chatId || asked !== this.asked) return;
      showError(this.error, null);
      this.ids = new Set(pins.map((pin) => pin.message.id));
      this.list.replaceChildren(...pins.map((pin) => this.item(pin)));
      this.empty.hidden = pins.length > 0;
      this.onChange();
    } catch (failure) {
      if (this.chatId === chatId) this.onError(this.error, failure);
    }
  }

  reset(chatId = null) {
    this.chatId = chatId;
    this.ids = new Set();
    this.list.replaceChildren();
    this.empty.hidden = true;
    showError(this.error, null);
  }

  /** A pin or unpin, ours or another member's: the panel and the messages' buttons follow. */
  changed(messageId, pinned) {
    if (pinned) this.ids.add(messageId);
    else this.ids.delete(messageId);
    this.onChange();
    if (this.chatId !== null) this.load(this.chatId);
  }

  /** Pin or unpin a message of the open chat. */
  async set(messageId, pinned) {
    const chatId = this.chatId;
    if (pinned) await api.pinMessage(chatId, messageId);
    else await api.unpinMessage(chatId, messageId);
    if (this.chatId === chatId) this.changed(messageId, pinned);
  }

  item(pin) {
    const show = el("button", { type: "button", class: "hit" }, ...this.describe(pin.message));
    show.addEventListener("click", () => this.onShow(pin.message));
    return el("li", { "data-id": pin.message.id }, show);
  }
}
