// Mentions: `@` autocomplete in a message box from the chat's members, and whether a message mentions you. The
// server resolves `@name` itself when the message is sent; this only helps to type the names.

import { el } from "./dom.js";

const MAX_OPTIONS = 8;
// An `@` at the start or after a space, then what has been typed of the name, up to the caret.
const TYPED = /(?:^|\s)@([^\s@]{0,64})$/u;

/** Whether a message mentions you, by name or with `@all`. */
export function mentionsMe(message, userId) {
  return Boolean(message.mentions_all) || (message.mentions ?? []).includes(userId);
}

/**
 * Suggestions under `textbox` while an `@name` is being typed, in `listbox` (a role="listbox" list): the names
 * `names()` gives that start with what was typed, and "all". ArrowDown and ArrowUp choose, Enter or Tab inserts
 * `@name `, Escape closes; the text box points at the chosen one with aria-activedescendant, so focus stays there.
 */
export class MentionSuggestions {
  constructor(textbox, listbox, names) {
    this.textbox = textbox;
    this.listbox = listbox;
    this.names = names;
    this.options = [];
    this.active = 0;
    this.start = 0; // where the `@` is in the text
    textbox.setAttribute("aria-autocomplete", "list");
    textbox.setAttribute("aria-controls", listbox.id);
    for (const type of ["input", "click"]) textbox.addEventListener(type, () => this.update());
    textbox.addEventListener("blur", () => this.close());
    // Before the text box's own keys (Enter sends): the form hears the key first, on its way down.
    textbox.form.addEventListener("keydown", (event) => this.key(event), { capture: true });
    listbox.addEventListener("mousedown", (event) => event.preventDefault()); // keep focus in the text box
  }

  get isOpen() {
    return !this.listbox.hidden;
  }

  update() {
    const { value, selectionStart, selectionEnd } = this.textbox;
    const typed = selectionStart === selectionEnd ? TYPED.exec(value.slice(0, selectionStart)) : null;
    if (!typed) {
      this.close();
      return;
    }
    const query = typed[1].toLocaleLowerCase();
    this.start = selectionStart - typed[1].length - 1;
    const matches = this.names().filter((name) => name.toLocaleLowerCase().startsWith(query));
    if ("all".startsWith(query)) matches.push("all");
    this.options = matches.slice(0, MAX_OPTIONS);
    if (!this.options.length) {
      this.close();
      return;
    }
    this.active = 0;
    this.render();
  }

  render() {
    this.listbox.replaceChildren(
      ...this.options.map((name, index) => {
        const option = el(
          "li",
          { role: "option", id: `${this.listbox.id}-${index}`, "aria-selected": String(index === this.active) },
          "@",
          el("bdi", {}, name),
          name === "all" ? el("span", { class: "hint" }, " everyone in this chat") : null,
        );
        option.addEventListener("click", () => this.choose(index));
        return option;
      }),
    );
    this.listbox.hidden = false;
    this.textbox.setAttribute("aria-activedescendant", `${this.listbox.id}-${this.active}`);
  }

  key(event) {
    if (!this.isOpen || event.target !== this.textbox || event.isComposing) return;
    const moves = { ArrowDown: 1, ArrowUp: -1 };
    if (event.key in moves) {
      this.active = (this.active + moves[event.key] + this.options.length) % this.options.length;
      this.render();
    } else if (event.key === "Enter" || event.key === "Tab") {
      this.choose(this.active);
    } else if (event.key === "Escape") {
      this.close();
    } else {
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
  }

  /** Put `@name ` in place of what was typed after the `@`, and the caret after it. */
  choose(index) {
    const name = this.options[index];
    const { value, selectionStart } = this.textbox;
    const inserted = `@${name} `;
    this.textbox.value = value.slice(0, this.start) + inserted + value.slice(selectionStart);
    const caret = this.start + inserted.length;
    this.textbox.setSelectionRange(caret, caret);
    this.close();
    this.textbox.dispatchEvent(new Event("input", { bubbles: true }));
    this.textbox.focus();
  }

  close() {
    if (!this.isOpen) return;
    this.listbox.hidden = true;
    this.listbox.replaceChildren();
    this.textbox.removeAttribute("aria-activedescendant");
  }
}
