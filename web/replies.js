// Replies: the quote a reply shows of the message it answers, and the composer's draft of one, which shows that quote
// above the message box ("Replying to …", with "Cancel reply") until the reply is sent or cancelled.

import { el } from "./dom.js";

/** The first 100 characters of a message's text, as the server quotes it (whole code points, never half of one). */
function snippetOf(content) {
  return [...content].slice(0, 100).join("");
}

/** The quote of the message a reply answers: `who` wrote it (a node), and its first words or that it was deleted. */
export function replyQuote(reply, who) {
  const gone = reply.deleted || reply.snippet === null;
  return el(
    "blockquote",
    { class: "quote" },
    who,
    ": ",
    gone ? el("i", {}, "deleted message") : el("span", { dir: "auto" }, `“${reply.snippet}”`),
  );
}

/**
 * The message the next one answers, shown in `preview` (its `quote` element holds the quote) until `cancel()`. The
 * text box is described by the quote meanwhile; `who(userId)` names the author, `onChange()` hears each change.
 */
export class ReplyDraft {
  constructor({ preview, quote, textbox, who, onChange }) {
    Object.assign(this, { preview, quote, textbox, who, onChange });
    this.hint = textbox.getAttribute("aria-describedby");
    this.replyTo = null; // as a reply's `reply_to`: { id, sender_id, snippet, deleted }
  }

  start(message) {
    const snippet = snippetOf(message.content);
    this.replyTo = { id: message.id, sender_id: message.sender_id, snippet, deleted: false };
    this.quote.replaceChildren("Replying to ", replyQuote(this.replyTo, this.who(message.sender_id)));
    this.preview.hidden = false;
    this.textbox.setAttribute("aria-describedby", `${this.quote.id} ${this.hint}`);
    this.textbox.focus();
    this.onChange();
  }

  cancel() {
    if (!this.replyTo) return;
    this.replyTo = null;
    this.preview.hidden = true;
    this.quote.replaceChildren();
    this.textbox.setAttribute("aria-describedby", this.hint);
    this.onChange();
  }
}
