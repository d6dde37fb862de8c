// Files in the chat: the composer's uploads, each sent as soon as it is chosen (with its progress) and listed until
// the message goes, and the attachments a message shows: images as thumbnails that open the full image, other files
// as links that download them. Names and sizes from the server are set as text (dom.js).

import * as api from "./api.js";
import { el } from "./dom.js";

export const MAX_ATTACHMENTS = 10; // the spec's NewMessage.attachments maxItems
const THUMBNAIL_BOX_PX = 240;

const sizes = ["byte", "kilobyte", "megabyte", "gigabyte"].map(
  (unit) =>
    new Intl.NumberFormat(undefined, {
      style: "unit",
      unit,
      unitDisplay: unit === "byte" ? "long" : "short",
      maximumFractionDigits: 1,
    }),
);

/** A size in bytes for a person: "812 bytes", "1.2 kB", "3.4 MB". */
export function formatSize(bytes) {
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < sizes.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return sizes[unit].format(value);
}

/** The width and height to show an image at, inside a square box, keeping its shape; the box when they are unknown. */
function fit(width, height, box) {
  if (!width || !height) return [box, box];
  const scale = Math.min(1, box / Math.max(width, height));
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

/** An image attachment: its thumbnail (alt: the file's name), a link to the full image in a new tab. */
function thumbnail(attachment) {
  const [width, height] = fit(attachment.width, attachment.height, THUMBNAIL_BOX_PX);
  return el(
    "a",
    { class: "thumbnail", href: attachment.url, target: "_blank", rel: "noopener", title: attachment.name },
    el("img", { src: attachment.thumbnail_url, alt: attachment.name, width, height }),
    el("span", { class: "visually-hidden" }, " (opens in a new tab)"),
  );
}

/** Any other attachment: a chip with its name and size that downloads it. */
function fileChip(attachment) {
  return el(
    "a",
    { class: "file-chip", href: attachment.url, download: attachment.name },
    el("span", { class: "file-name", dir: "auto" }, attachment.name),
    " ",
    el("span", { class: "file-size" }, formatSize(attachment.size)),
  );
}

/** A message's attachments as a list, or null when it has none. */
export function attachmentList(attachments) {
  if (!attachments?.length) return null;
  return el(
    "ul",
    { class: "files", "aria-label": "Attached files" },
    ...attachments.map((file) => el("li", {}, file.thumbnail_url ? thumbnail(file) : fileChip(file))),
  );
}

/** What an upload looks like as a message's attachment (the stream brings the stored one a moment later). */
export function asAttachment(upload) {
  const { id, name, content_type, size, url, thumbnail_url, width, height } = upload;
  return { id, name, content_type, size, url, thumbnail_url, width, height };
}

/**
 * The files chosen for the next message, in a list named "Attachments": each is uploaded at once, with a progress
 * bar, and has a Remove button (which also cancels its upload). `onChange()` hears every change of the list;
 * `onError(error)` gets a failed upload's ApiError, its text led by the file's name; `onEmptied()` is called when
 * the last one is removed by hand, for focus to go somewhere.
 */
export class PendingUploads {
  constructor(list, { onChange, onError, onEmptied }) {
    this.list = list;
    this.entries = [];
    this.onChange = onChange;
    this.onError = onError;
    this.onEmptied = onEmptied;
  }

  get count() {
    return this.entries.length;
  }

  /** Start uploading each file; past MAX_ATTACHMENTS the rest are refused with one error. */
  add(files) {
    const room = MAX_ATTACHMENTS - this.entries.length;
    const chosen = [...files];
    for (const file of chosen.slice(0, Math.max(0, room))) this.start(file);
    if (chosen.length > room) {
      this.onError(new api.ApiError(400, `A message takes at most ${MAX_ATTACHMENTS} files.`));
    }
    this.changed();
  }

  start(file) {
    const { name } = file;
    const progress = el("progress", { max: file.size || 1, value: 0, "aria-label": `Uploading ${name}` });
    const remove = el(
      "button",
      { type: "button", class: "remove" },
      "Remove",
      el("span", { class: "visually-hidden" }, ` ${name}`),
    );
    const item = el(
      "li",
      {},
      el("span", { class: "file-name", dir: "auto" }, name),
      el("span", { class: "file-size" }, formatSize(file.size)),
      progress,
      remove,
    );
    const entry = { item, upload: null, controller: new AbortController() };
    entry.done = api
      .uploadFile(file, undefined, {
        signal: entry.controller.signal,
        onProgress: (sent, total) => {
          progress.max = total || 1;
          progress.value = sent;
        },
      })
      .then((upload) => {
        entry.upload = upload;
        if (upload.thumbnail_url) {
          item.prepend(el("img", { class: "preview", src: upload.thumbnail_url, alt: "", width: 40, height: 40 }));
        }
        progress.remove();
      })
      .catch((error) => {
        if (!this.entries.includes(entry)) return; // removed by hand: its cancellation is no error
        this.drop(entry);
        if (error.name !== "AbortError") this.onError(new api.ApiError(error.status, `${name}: ${error.message}`));
      });
    remove.addEventListener("click", () => {
      const next = item.nextElementSibling ?? item.previousElementSibling;
      this.drop(entry);
      if (next) next.querySelector("button.remove").focus();
      else this.onEmptied();
    });
    this.entries.push(entry);
    this.list.append(item);
  }

  drop(entry) {
    this.entries = this.entries.filter((other) => other !== entry);
    entry.controller.abort();
    entry.item.remove();
    this.changed();
  }

  changed() {
    this.list.hidden = this.entries.length === 0;
    this.onChange();
  }

  /** Once every upload listed now has finished: those that made it, as {entries, uploads} to `discard` once sent. */
  async ready() {
    const entries = [...this.entries];
    await Promise.all(entries.map((entry) => entry.done));
    const stored = entries.filter((entry) => entry.upload && this.entries.includes(entry));
    return { entries: stored, uploads: stored.map((entry) => entry.upload) };
  }

  /** Take these (sent) off the list. */
  discard(entries) {
    for (const entry of entries) if (this.entries.includes(entry)) this.drop(entry);
  }

  /** Empty the list, cancelling uploads on their way. */
  clear() {
    for (const entry of [...this.entries]) this.drop(entry);
  }
}

/**
 * Every way to choose files for a message, each handing them to `onFiles(files)`: the button (which opens the
 * picker, several files at once), a drop of files on `dropZone` (marked `.dropping` while they are over it), and an
 * image pasted into the text box (its text, if the clipboard has some too, is pasted as well).
 */
export function acceptFiles({ button, picker, textbox, dropZone, onFiles }) {
  const hand = (files) => files.length && onFiles([...files]);
  button.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    hand(picker.files);
    picker.value = "";
  });
  textbox.addEventListener("paste", (event) => {
    const images = [...(event.clipboardData?.files ?? [])].filter((file) => file.type.startsWith("image/"));
    if (!images.length) return;
    if (!event.clipboardData.types.includes("text/plain")) event.preventDefault();
    hand(images);
  });
  const carriesFiles = (event) => Boolean(event.dataTransfer?.types.includes("Files"));
  dropZone.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    dropZone.classList.add("dropping");
  });
  dropZone.addEventListener("dragleave", (event) => {
    if (!dropZone.contains(event.relatedTarget)) dropZone.classList.remove("dropping");
  });
  dropZone.addEventListener("drop", (event) => {
    dropZone.classList.remove("dropping");
    if (!carriesFiles(event)) return;
    event.preventDefault();
    hand(event.dataTransfer.files);
    textbox.focus();
  });
  // A file dropped anywhere else would make the browser leave the page to show it.
  for (const type of ["dragover", "drop"]) {
    document.addEventListener(type, (event) => carriesFiles(event) && event.preventDefault());
  }
}
