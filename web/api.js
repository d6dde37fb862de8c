// Every request this client makes, one function per operation of openapi/chat.yaml, each with the spec's method and
// path written out. Nothing else in web/ touches the network (tests/test_web_client_serving.py checks both).

const CHAT_PAGE = 100;
export const MESSAGE_PAGE = 50;
export const SEARCH_PAGE = 20;

/** An API error: the HTTP status (0 when the server could not be reached) and the body's `error` text. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A path of the spec with its {parameters} filled in, plus a query string of the values that are set (an array's
 * items as the parameter repeated, as the spec's `explode: true` says). */
function url(path, params = {}, query = {}) {
  const filled = path.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(params[name]));
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (Array.isArray(value)) value.forEach((item) => search.append(name, item));
    else if (value !== undefined && value !== null) search.set(name, value);
  }
  const text = search.toString();
  return text ? `${filled}?${text}` : filled;
}

/** A random Idempotency-Key (crypto.randomUUID needs a secure context; this works over plain http too). */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * One request. `form` goes out as application/x-www-form-urlencoded, the body of every operation but an upload; with
 * `multipart` it goes out as multipart/form-data instead, through XMLHttpRequest, whose upload progress (fetch has
 * none) `onProgress(sent, total)` hears. `signal` aborts either kind.
 */
async function call(method, path, { params, query, form, multipart, onProgress, signal, idempotencyKey } = {}) {
  const headers = { Accept: "application/json" };
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  const fields = Object.entries(form ?? {}).filter(([, value]) => value !== undefined);
  let answer;
  try {
    if (multipart) {
      const body = new FormData();
      for (const [name, value] of fields) body.append(name, value);
      answer = await sendWithProgress(method, url(path, params, query), { headers, body, onProgress, signal });
    } else {
      const init = { method, headers, credentials: "same-origin", signal };
      if (form) init.body = new URLSearchParams(fields);
      const response = await fetch(url(path, params, query), init);
      answer = { status: response.status, statusText: response.statusText, text: await response.text() };
    }
  } catch (error) {
    if (error?.name === "AbortError") throw error;
    throw new ApiError(0, "The server could not be reached. Check your connection and try again.");
  }
  let body = null;
  try {
    body = JSON.parse(answer.text);
  } catch {
    // Only a proxy in between answers with something else; the status says enough then.
  }
  if (answer.status < 200 || answer.status > 299) {
    const text = body && typeof body.error === "string" ? body.error : `${answer.status} ${answer.statusText}`;
    throw new ApiError(answer.status, text);
  }
  return body;
}

/** An XMLHttpRequest as a promise of the answer's status and text; rejects as fetch does (TypeError, AbortError). */
function sendWithProgress(method, target, { headers, body, onProgress, signal }) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(method, target);
    for (const [name, value] of Object.entries(headers)) request.setRequestHeader(name, value);
    if (onProgress) request.upload.addEventListener("progress", (event) => onProgress(event.loaded, event.total));
    request.addEventListener("load", () =>
      resolve({ status: request.status, statusText: request.statusText, text: request.responseText }),
    );
    request.addEventListener("error", () => reject(new TypeError("network error")));
    request.addEventListener("abort", () => reject(new DOMException("upload cancelled", "AbortError")));
    if (signal?.aborted) {
      reject(new DOMException("upload cancelled", "AbortError"));
      return;
    }
    signal?.addEventListener("abort", () => request.abort());
    request.send(body);
  });
}

/** The event stream; the browser resumes it after a drop by itself, sending Last-Event-ID. */
function stream(method, path, { query } = {}) {
  return new EventSource(url(path, {}, query));
}

export const login = (name, password) => call("POST", "/api/login", { form: { name, password } });

export const register = (name, password, email) =>
  call("POST", "/api/user/{user_id}", { params: { user_id: 0 }, form: { name, password, email } });

export const logout = () => call("POST", "/api/logout");

/** Who the session cookies (HttpOnly, so the page cannot read them) belong to; a 401 when there is no live one. */
export const getSession = () => call("GET", "/api/session");

export const getUser = (userId) => call("GET", "/api/user/{user_id}", { params: { user_id: userId } });

/** Make one of your image uploads your avatar; resolves to `{user}` with its `avatar_url`. */
export const setAvatar = (userId, uploadId) =>
  call("PUT", "/api/user/{user_id}/avatar", { params: { user_id: userId }, form: { upload_id: uploadId } });

export const removeAvatar = (userId) =>
  call("DELETE", "/api/user/{user_id}/avatar", { params: { user_id: userId } });

/** Change who may add this user to a chat at once (`anyone`, `contacts` or `nobody`). */
export const setWhoCanAddMe = (userId, whoCanAddMe) =>
  call("PUT", "/api/user/{user_id}", { params: { user_id: userId }, form: { who_can_add_me: whoCanAddMe } });

/**
 * Upload one file (multipart/form-data); resolves to the Upload, whose id a message's `attachments` or an avatar
 * takes. `onProgress(sent, total)` follows the bytes going out; `signal` cancels.
 */
export const uploadFile = (file, name, { onProgress, signal } = {}) =>
  call("POST", "/api/uploads", { form: { file, name }, multipart: true, onProgress, signal });

export const listChats = (before) => call("GET", "/api/chats", { query: { limit: CHAT_PAGE, before } });

export const createChat = (title, idempotencyKey) =>
  call("POST", "/api/chats", { form: { title }, idempotencyKey });

export const leaveChat = (chatId) => call("DELETE", "/api/chats", { query: { chat_id: chatId } });

export const listMessages = (chatId, { before, after } = {}) =>
  call("GET", "/api/chats/{chat_id}", { params: { chat_id: chatId }, query: { limit: MESSAGE_PAGE, before, after } });

/**
 * Text, files or both: `content` undefined leaves it out; `attachments` is comma-separated upload ids. `replyTo` quotes
 * a message of the chat; `threadRootId` posts in that message's thread instead of the chat's history.
 */
export const sendMessage = (chatId, { content, attachments, replyTo, threadRootId }, idempotencyKey) =>
  call("POST", "/api/chats/{chat_id}", {
    params: { chat_id: chatId },
    form: { content, attachments, reply_to: replyTo, thread_root_id: threadRootId },
    idempotencyKey,
  });

export const renameChat = (chatId, title) =>
  call("PUT", "/api/chats/{chat_id}", { params: { chat_id: chatId }, form: { title } });

export const deleteMessage = (chatId, messageId) =>
  call("DELETE", "/api/chats/{chat_id}", { params: { chat_id: chatId }, query: { id: messageId } });

export const editMessage = (chatId, messageId, content) =>
  call("PUT", "/api/chats/{chat_id}/messages/{message_id}", {
    params: { chat_id: chatId, message_id: messageId },
    form: { content },
  });

/** Resolves to `{message_id, reactions}`, the message's reactions after the change (`me` is yours). */
export const addReaction = (chatId, messageId, emoji) =>
  call("PUT", "/api/chats/{chat_id}/messages/{message_id}/reactions/{emoji}", {
    params: { chat_id: chatId, message_id: messageId, emoji },
  });

export const removeReaction = (chatId, messageId, emoji) =>
  call("DELETE", "/api/chats/{chat_id}/messages/{message_id}/reactions/{emoji}", {
    params: { chat_id: chatId, message_id: messageId, emoji },
  });

/** The thread at a message: `{root, messages}`, its replies oldest first. */
export const listThread = (chatId, messageId, { before, after } = {}) =>
  call("GET", "/api/chats/{chat_id}/messages/{message_id}/thread", {
    params: { chat_id: chatId, message_id: messageId },
    query: { limit: MESSAGE_PAGE, before, after },
  });

/** `notify` is "all", "mentions" or "none"; resolves to the settings after the change. */
export const updateChatSettings = (chatId, notify) =>
  call("PUT", "/api/chats/{chat_id}/settings", { params: { chat_id: chatId }, form: { notify } });

/** The one direct chat with this user, created on first use; resolves to `{id}` (200 or 201 alike). */
export const openDirectChat = (userId) => call("POST", "/api/direct/{user_id}", { params: { user_id: userId } });

/** The chat's pins, newest first: `{pins: [{message, pinned_by, pinned_at}]}`. */
export const listPins = (chatId) => call("GET", "/api/chats/{chat_id}/pins", { params: { chat_id: chatId } });

export const pinMessage = (chatId, messageId) =>
  call("PUT", "/api/chats/{chat_id}/pins/{message_id}", { params: { chat_id: chatId, message_id: messageId } });

export const unpinMessage = (chatId, messageId) =>
  call("DELETE", "/api/chats/{chat_id}/pins/{message_id}", { params: { chat_id: chatId, message_id: messageId } });

export const listMembers = (chatId) => call("GET", "/api/chats/{chat_id}/members", { params: { chat_id: chatId } });

/** Resolves to `{status: "ok"}` when they were added, `{status: "invited", id}` when they must accept first. */
export const addMember = (chatId, name, idempotencyKey) =>
  call("POST", "/api/chats/{chat_id}/members", { params: { chat_id: chatId }, form: { name }, idempotencyKey });

/** The invitations waiting for this user's answer: adds by people they have not said may add them at once. */
export const listInvitations = () => call("GET", "/api/invitations");

export const acceptInvitation = (invitationId) =>
  call("POST", "/api/invitations/{invitation_id}", { params: { invitation_id: invitationId } });

export const declineInvitation = (invitationId) =>
  call("DELETE", "/api/invitations/{invitation_id}", { params: { invitation_id: invitationId } });

export const markRead = (chatId, messageId) =>
  call("POST", "/api/chats/{chat_id}/read", { params: { chat_id: chatId }, form: { message_id: messageId } });

export const search = (q, before) => call("GET", "/api/search", { query: { q, limit: SEARCH_PAGE, before } });

/** Say you are typing in a chat (`op` "start", again every `resend_in_ms` while you go on) or have stopped ("stop"). */
export const listTyping = (chatId) => call("GET", "/api/chats/{chat_id}/typing", { params: { chat_id: chatId } });
export const setTyping = (chatId, op) =>
  call("POST", "/api/chats/{chat_id}/typing", { params: { chat_id: chatId }, form: { op } });

/**
 * The presence of up to 100 users, in the order asked: `{presence: [{user_id, state, status_text}]}`, `state` one of
 * online, idle, offline or unknown. `userIds` is an array; it goes out comma-separated, as String() joins it.
 */
export const getPresence = (userIds) => call("GET", "/api/presence", { query: { user_ids: userIds } });

/** Say this session is `idle` (no input for a while) or `active` again; resolves to your presence after it. */
export const setPresence = (presence) => call("PUT", "/api/presence", { form: { state: presence } });

/** The events after `lastEventId` at once, as JSON (`Accept: application/json`), and the id to go on from. */
export const missedEvents = (lastEventId) => call("GET", "/api/events", { query: { last_event_id: lastEventId } });

export const openEvents = (lastEventId) => stream("GET", "/api/events", { query: { last_event_id: lastEventId } });
