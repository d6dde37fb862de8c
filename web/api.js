// Every request this client makes, one function per operation of openapi/chat.yaml, each with the spec's method and
// path written out. Nothing else in web/ touches the network (tests/test_web_client_serving.py checks both).

const CHAT_PAGE = 100;
export const MESSAGE_PAGE = 50;
const SEARCH_PAGE = 20;

/** An API error: the HTTP status (0 when the server could not be reached) and the body's `error` text. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A path of the spec with its {parameters} filled in, plus a query string of the values that are set. */
function url(path, params = {}, query = {}) {
  const filled = path.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(params[name]));
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null) search.set(name, value);
  }
  const text = search.toString();
  return text ? `${filled}?${text}` : filled;
}

/** A random Idempotency-Key (crypto.randomUUID needs a secure context; this works over plain http too). */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function call(method, path, { params, query, form, idempotencyKey } = {}) {
  const headers = { Accept: "application/json" };
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  const init = { method, headers, credentials: "same-origin" };
  // A URLSearchParams body goes out as application/x-www-form-urlencoded, the only body the API takes.
  if (form) init.body = new URLSearchParams(Object.entries(form).filter(([, value]) => value !== undefined));
  let response;
  try {
    response = await fetch(url(path, params, query), init);
  } catch {
    throw new ApiError(0, "The server could not be reached. Check your connection and try again.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Only a proxy in between answers with something else; the status says enough then.
  }
  if (!response.ok) {
    const text = body && typeof body.error === "string" ? body.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, text);
  }
  return body;
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

/** Change who may add this user to a chat at once (`anyone`, `contacts` or `nobody`). */
export const setWhoCanAddMe = (userId, whoCanAddMe) =>
  call("PUT", "/api/user/{user_id}", { params: { user_id: userId }, form: { who_can_add_me: whoCanAddMe } });

export const listChats = (before) => call("GET", "/api/chats", { query: { limit: CHAT_PAGE, before } });

export const createChat = (title, idempotencyKey) =>
  call("POST", "/api/chats", { form: { title }, idempotencyKey });

export const leaveChat = (chatId) => call("DELETE", "/api/chats", { query: { chat_id: chatId } });

export const listMessages = (chatId, { before, after } = {}) =>
  call("GET", "/api/chats/{chat_id}", { params: { chat_id: chatId }, query: { limit: MESSAGE_PAGE, before, after } });

export const sendMessage = (chatId, content, idempotencyKey) =>
  call("POST", "/api/chats/{chat_id}", { params: { chat_id: chatId }, form: { content }, idempotencyKey });

export const renameChat = (chatId, title) =>
  call("PUT", "/api/chats/{chat_id}", { params: { chat_id: chatId }, form: { title } });

export const deleteMessage = (chatId, messageId) =>
  call("DELETE", "/api/chats/{chat_id}", { params: { chat_id: chatId }, query: { id: messageId } });

export const editMessage = (chatId, messageId, content) =>
  call("PUT", "/api/chats/{chat_id}/messages/{message_id}", {
    params: { chat_id: chatId, message_id: messageId },
    form: { content },
  });

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

/** The events after `lastEventId` at once, as JSON (`Accept: application/json`), and the id to go on from. */
export const missedEvents = (lastEventId) => call("GET", "/api/events", { query: { last_event_id: lastEventId } });

export const openEvents = (lastEventId) => stream("GET", "/api/events", { query: { last_event_id: lastEventId } });
