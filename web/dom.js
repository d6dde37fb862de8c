// Small DOM helpers. Text from the server only ever becomes text: `el` sets textContent and attributes, and nothing
// in web/ assigns HTML (the page's Content-Security-Policy turns every HTML sink off with Trusted Types).

/** An element with attributes (`hidden: true` sets a bare attribute, false or null leaves it out) and children. */
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.filter((child) => child !== null && child !== undefined));
  return element;
}

export const byId = (id) => document.getElementById(id);

/** Show an error's text in the element (a role="alert" region), or clear it with null. */
export function showError(element, error) {
  element.textContent = error ? error.message || String(error) : "";
  element.hidden = !error;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const day = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const dayInYear = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

/** A <time> for an RFC 3339 timestamp: the time of day for today, else the date; the full moment as its tooltip. */
export function timeElement(timestamp, className) {
  const moment = new Date(timestamp);
  const now = new Date();
  let text;
  if (moment.toDateString() === now.toDateString()) text = clock.format(moment);
  else if (moment.getFullYear() === now.getFullYear()) text = day.format(moment);
  else text = dayInYear.format(moment);
  return el("time", { class: className, datetime: timestamp, title: full.format(moment) }, text);
}

/** Run an async form action once at a time: a second Enter while the first is on its way does nothing. */
export function onSubmit(form, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.dataset.busy) return;
    form.dataset.busy = "yes";
    form.setAttribute("aria-busy", "true");
    try {
      await action(event);
    } finally {
      delete form.dataset.busy;
      form.removeAttribute("aria-busy");
    }
  });
}

/** Enter submits the form a text area is in; Shift+Enter (or Enter while an input method composes) adds a line. */
export function enterSubmits(textarea) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      textarea.form.requestSubmit();
    }
  });
}

/** Move `node` before `reference` in `parent`, keeping focus where it was (moveBefore keeps it where supported). */
export function place(parent, node, reference) {
  if (node.parentNode === parent && node.nextSibling === reference) return;
  const focused = document.activeElement;
  if (typeof parent.moveBefore === "function" && node.parentNode === parent) parent.moveBefore(node, reference);
  else parent.insertBefore(node, reference);
  if (focused && focused !== document.activeElement && focused.isConnected) focused.focus();
}
