// The live event stream (GET /api/events): every change in the user's chats, resumed after a drop with no gap.
//
// The browser's EventSource reconnects by itself after a network error, sending Last-Event-ID, and the server
// replays what was missed. When the browser gives up instead (an error status), this module fetches the missed
// events as JSON, which also tells a 401 from a dropped network, and opens a new stream from the last one, with a
// growing delay while the server cannot be reached. When the browser says the network is gone, the stream is closed
// at once (a connection over a dead network can hang without an error) and reopened from the last event id as soon
// as the network is back. Events are handed on in id order, each once; `reset` (the id we sent is unknown or too old:
// refetch) and `ready` (everything missed was sent) always, and each sets the id to go on from. `typing` and
// `presence` are ephemeral: they carry no id, are never replayed, and are handed on as they come.

import * as api from "./api.js";

const TYPES = [
  "message.created",
  "message.edited",
  "message.deleted",
  "chat.renamed",
  "member.added",
  "member.left",
  "chat.read",
  "chat.invited",
  "user.updated",
  "reaction.added",
  "reaction.removed",
  "thread.updated",
  "mention",
  "message.pinned",
  "message.unpinned",
  "reset",
  "ready",
  "typing",
  "presence",
];
// Events with no `id:` line. The browser still gives each the last id it saw as its `lastEventId` (the spec keeps
// that buffer until an `id:` changes it), so comparing that with ours would drop every one as already seen.
const EPHEMERAL = new Set(["typing", "presence"]);
const FIRST_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;

export class LiveEvents {
  /**
   * onEvent(type, data) gets each event; onStatus(state, detail) hears "connecting", "live", "reconnecting" and
   * "offline"; onSessionEnded(error) is called when the server answers 401, after which the stream stays closed.
   */
  constructor({ onEvent, onStatus, onSessionEnded }) {
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.onSessionEnded = onSessionEnded;
    this.lastEventId = null; // a BigInt once any event carried an id
    this.source = null;
    this.timer = null;
    this.delay = FIRST_DELAY_MS;
    this.stopped = true;
    this.wentOnline = () => this.resumeNow();
    this.wentOffline = () => this.dropped();
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.wentOnline);
    window.addEventListener("offline", this.wentOffline);
    this.onStatus("connecting");
    this.open();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.wentOnline);
    window.removeEventListener("offline", this.wentOffline);
    clearTimeout(this.timer);
    this.timer = null;
    this.source?.close();
    this.source = null;
    this.lastEventId = null;
  }

  open() {
    const source = api.openEvents(this.lastEventId?.toString());
    this.source = source;
    for (const type of TYPES) {
      source.addEventListener(type, (message) => this.receive(source, type, message));
    }
    source.addEventListener("error", () => this.failed(source));
  }

  receive(source, type, message) {
    if (source !== this.source) return;
    if (this.take(type, message.lastEventId, JSON.parse(message.data)) && type === "ready") {
      this.delay = FIRST_DELAY_MS;
    }
  }

  /**
   * Hand one event on unless it was seen already; false when it was. `reset` and `ready` always pass, and their id
   * becomes the place to go on from even when it is lower: a reset answers an id this server never handed out (its
   * database was restored, say), and keeping the higher id would drop every live event below it as a duplicate.
   * An ephemeral event always passes and leaves the id alone, whatever `lastEventId` the browser gave it.
   */
  take(type, id, data) {
    if (EPHEMERAL.has(type)) {
      this.onEvent(type, data);
      return true;
    }
    const eventId = id === "" || id === undefined ? null : BigInt(id);
    if (type === "reset" || type === "ready") {
      if (eventId !== null) this.lastEventId = eventId;
    } else if (eventId !== null) {
      if (this.lastEventId !== null && eventId <= this.lastEventId) return false;
      this.lastEventId = eventId;
    }
    this.onEvent(type, data);
    return true;
  }

  failed(source) {
    if (source !== this.source || this.stopped) return;
    if (source.readyState === EventSource.CLOSED) {
      this.onStatus("reconnecting");
      this.resumeLater();
    } else {
      this.onStatus(navigator.onLine ? "reconnecting" : "offline");
    }
  }

  /** The network is gone: close the stream, and try again later in case no "online" event comes. */
  dropped() {
    if (this.stopped) return;
    this.source?.close();
    this.source = null;
    this.onStatus("offline", "changes will show when the connection is back");
    this.resumeLater();
  }

  /** Back online: reopen the stream from the last event id now, rather than at the next try. */
  resumeNow() {
    if (this.stopped || this.source?.readyState === EventSource.OPEN) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.delay = FIRST_DELAY_MS;
    this.source?.close();
    this.onStatus("reconnecting");
    this.open();
  }

  resumeLater() {
    if (this.timer !== null || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.resume();
    }, this.delay);
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
  }

  /** Fetch what was missed as JSON (which also tells a 401 from a dropped network), then stream from there. */
  async resume() {
    this.source?.close();
    this.source = null;
    try {
      const batch = await api.missedEvents(this.lastEventId?.toString());
      if (this.stopped || this.source) return; // back online meanwhile: that stream replays by itself
      for (const event of batch.events) this.take(event.type, String(event.id), event.data);
      // The batch's own place to go on from (the spec's "send last_event_id back"), lower than ours after a reset.
      this.lastEventId = BigInt(batch.last_event_id);
      this.open();
    } catch (error) {
      if (this.stopped || this.source) return;
      if (error.status === 401) {
        this.stop();
        this.onSessionEnded(error);
        return;
      }
      this.onStatus(error.status === 0 ? "offline" : "reconnecting", error.message);
      this.resumeLater();
    }
  }
}
