// People's avatars: the picture a user set (their `avatar_url`), or their initials on a colour of their own. Always
// beside the name, so the picture says nothing more: alt="" for the image, aria-hidden for the initials (which CSS
// draws from an attribute, so they add no text to the name either).

import * as api from "./api.js";
import { el } from "./dom.js";

const TONES = 6; // style.css has .tone-0 to .tone-5

/** The first letter or digit of a name's first two words: "Alice Smith" → "AS", "bob" → "B"; "?" when it has none. */
export function initials(name) {
  const words = String(name).match(/[\p{L}\p{N}]+/gu) ?? [];
  const letters = words.slice(0, 2).map((word) => [...word][0]);
  return letters.join("").toLocaleUpperCase() || "?";
}

/**
 * The avatar of user `userId`, marked `data-avatar` with their id so that a change (a `user.updated` event) finds
 * every one shown. `size` is a class: "small" in lists and messages, "large" for your own.
 */
export function avatarElement(userId, name, url, size = "small") {
  if (url) {
    const pixels = size === "large" ? 32 : 24;
    return el("img", {
      class: `avatar ${size}`,
      src: url,
      alt: "",
      width: pixels,
      height: pixels,
      "data-avatar": userId,
    });
  }
  return el("span", {
    class: `avatar ${size} initials tone-${Number(userId) % TONES}`,
    "data-initials": initials(name),
    "data-avatar": userId,
    "aria-hidden": "true",
  });
}

/**
 * "Set avatar" (pick an image, upload it with its progress shown, make it your avatar) and "Remove avatar".
 * `userId()` is who is logged in now (an answer for someone else is dropped), `onUser(user)` gets the user each
 * change answers with, `onError(error)` an ApiError to show, or null to clear the last one.
 */
export function avatarControls({ setButton, removeButton, picker, progress, status, userId, onUser, onError }) {
  setButton.addEventListener("click", () => picker.click());
  picker.addEventListener("change", async () => {
    const [file] = picker.files;
    picker.value = "";
    const who = userId();
    if (!file || who === undefined) return;
    onError(null);
    status.textContent = "";
    progress.removeAttribute("value"); // indeterminate until the first bytes go
    progress.hidden = false;
    try {
      const onProgress = (sent, total) => {
        progress.max = total || 1;
        progress.value = sent;
      };
      const upload = await api.uploadFile(file, undefined, { onProgress });
      const { user } = await api.setAvatar(who, upload.id);
      if (userId() !== who) return;
      onUser(user);
      status.textContent = "Avatar set.";
    } catch (error) {
      if (userId() === who) onError(error);
    } finally {
      progress.hidden = true;
    }
  });
  removeButton.addEventListener("click", async () => {
    const who = userId();
    onError(null);
    status.textContent = "";
    try {
      const { user } = await api.removeAvatar(who);
      if (userId() !== who) return;
      onUser(user);
      status.textContent = "Avatar removed.";
      setButton.focus(); // the button goes away with the avatar
    } catch (error) {
      if (userId() === who) onError(error);
    }
  });
}
