// Reactions: the bar under a message (each emoji with its count, pressed when one of them is yours), "Add reaction"
// with a small picker of common emoji, and the arithmetic of the reaction events, which say who reacted, not totals.

import { el } from "./dom.js";

/** The picker's emoji, each fully qualified (❤️ with its variation selector), with a name for its tooltip. */
export const PICKER = [
  ["👍", "thumbs up"],
  ["❤️", "red heart"],
  ["😂", "face with tears of joy"],
  ["🎉", "party popper"],
  ["😮", "face with open mouth"],
  ["😢", "crying face"],
  ["👀", "eyes"],
  ["✅", "check mark"],
];

/**
 * A message's reaction bar: a toggle button per emoji, named like "👍 2" and pressed when you reacted, then "Add
 * reaction", which opens the picker (Escape closes it). `onToggle(emoji, add)` sends the change. Each button has a
 * `data-key`, so that a re-render can give focus back to the same one; `pickerOpen` keeps the picker open across it.
 */
export function reactionBar(reactions, { onToggle, pickerOpen = false }) {
  const buttons = (reactions ?? []).map(({ emoji, count, me }) => {
    const button = el(
      "button",
      { type: "button", class: "reaction", "aria-pressed": String(Boolean(me)), "data-key": `reaction ${emoji}` },
      el("span", { class: "emoji" }, emoji),
      " ",
      el("span", { class: "count" }, String(count)),
    );
    button.addEventListener("click", () => onToggle(emoji, !me));
    return button;
  });
  const add = el(
    "button",
    { type: "button", class: "add-reaction", "aria-expanded": String(pickerOpen), "data-key": "add reaction" },
    "Add reaction",
  );
  const picker = el(
    "div",
    { class: "picker", role: "group", "aria-label": "Pick a reaction", hidden: !pickerOpen },
    ...PICKER.map(([emoji, name]) => {
      const choice = el("button", { type: "button", title: name, "data-key": `pick ${emoji}` }, emoji);
      choice.addEventListener("click", () => {
        close();
        const mine = (reactions ?? []).some((reaction) => reaction.emoji === emoji && reaction.me);
        if (!mine) onToggle(emoji, true);
      });
      return choice;
    }),
  );
  const close = () => {
    picker.hidden = true;
    add.setAttribute("aria-expanded", "false");
    add.focus();
  };
  add.addEventListener("click", () => {
    if (!picker.hidden) {
      close();
      return;
    }
    picker.hidden = false;
    add.setAttribute("aria-expanded", "true");
    picker.querySelector("button").focus();
  });
  picker.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.stopPropagation();
      close();
    }
  });
  return el("div", { class: "reactions", role: "group", "aria-label": "Reactions" }, ...buttons, add, picker);
}

/** Whether a rendered reaction bar has its picker open. */
export function pickerIsOpen(item) {
  const picker = item?.querySelector(".reactions .picker");
  return Boolean(picker && !picker.hidden);
}

/**
 * The reactions after someone added or took back `emoji` (`mine`: that someone is you), from a reaction event. Your own
 * event may come after the answer to your request already counted it, so it changes a count only when `me` says it
 * has not been counted yet.
 */
export function applyReaction(reactions, emoji, mine, added) {
  const list = (reactions ?? []).map((reaction) => ({ ...reaction }));
  const found = list.find((reaction) => reaction.emoji === emoji);
  if (added) {
    if (!found) list.push({ emoji, count: 1, me: mine });
    else if (!(mine && found.me)) {
      found.count += 1;
      if (mine) found.me = true;
    }
    return list;
  }
  if (!found || (mine && !found.me)) return list;
  found.count -= 1;
  if (mine) found.me = false;
  return found.count > 0 ? list : list.filter((reaction) => reaction !== found);
}

/** An event's reactions (whose `me` is always false) with `me` as the version shown knew it. */
export function keepMine(reactions, known) {
  return (reactions ?? []).map((reaction) => ({
    ...reaction,
    me: Boolean(known?.find((other) => other.emoji === reaction.emoji)?.me),
  }));
}
