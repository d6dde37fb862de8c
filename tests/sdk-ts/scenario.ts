// Drive a live chat-server through openapi-fetch, typed by what openapi-typescript generates from openapi/chat.yaml.
//
// Usage: node dist/scenario.js http://127.0.0.1:8080/api   (or set CHAT_API_URL)
// Prints "scenario passed" and exits 0 when every check holds; any mismatch throws and exits 1.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";

import createClient, { type Client, type Middleware } from "openapi-fetch";

import type { components, paths } from "./generated/chat-api.js";

type Message = components["schemas"]["Message"];
type NewUpload = components["schemas"]["NewUpload"];

const baseUrl = process.argv[2] ?? process.env.CHAT_API_URL;
if (!baseUrl) {
  console.error("usage: node dist/scenario.js <API base URL ending in /api> (or set CHAT_API_URL)");
  process.exit(2);
}

const PASSWORD = "correct horse battery";

// openapi-fetch sends every body as JSON unless told otherwise, and this API takes only form bodies (415 for JSON).
// Its default serializer would also turn an undefined field into the string "undefined"; this one leaves it out.
// An array is one comma-separated field, as the spec's `explode: false` asks (`attachments=4,7`).
function formBody(body: unknown): string {
  const form = new URLSearchParams();
  for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
    if (value !== undefined) form.append(key, Array.isArray(value) ? value.join(",") : String(value));
  }
  return form.toString();
}
const FORM = { headers: { "Content-Type": "application/x-www-form-urlencoded" } } as const;

// An upload is multipart/form-data. openapi-typescript types the `format: binary` file part as a string, which
// cannot hold a Blob, so the FormData itself travels as the body (the one cast in this file) and the request's own
// bodySerializer hands it to fetch as it is; fetch then writes the Content-Type with its multipart boundary.
function multipart(parts: { file: Blob; filename: string; name?: string }) {
  const form = new FormData();
  form.append("file", parts.file, parts.filename);
  if (parts.name !== undefined) form.append("name", parts.name);
  return { body: form as unknown as NewUpload, bodySerializer: (body: NewUpload) => body };
}

/** A real 3 by 2 PNG: red, with one blue pixel in the bottom right corner. */
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAIAAAASFvFNAAAAEklEQVR4nGP8zwAFTBCKkeE/ABQrAgPBBc+aAAAAAElFTkSuQmCC",
  "base64",
);

/** Node's fetch keeps no cookies: this jar takes them from Set-Cookie and sends them back, like a browser would. */
class CookieJar {
  readonly cookies = new Map<string, string>();

  constructor(initial: ReadonlyMap<string, string> = new Map()) {
    for (const [name, value] of initial) this.cookies.set(name, value);
  }

  readonly middleware: Middleware = {
    onRequest: ({ request }) => {
      if (this.cookies.size > 0) {
        request.headers.set("Cookie", [...this.cookies].map(([name, value]) => `${name}=${value}`).join("; "));
      }
      return request;
    },
    onResponse: ({ response }) => {
      for (const line of response.headers.getSetCookie()) this.store(line);
      return response;
    },
  };

  private store(line: string): void {
    const [pair = "", ...attributes] = line.split(";").map((part) => part.trim());
    const eq = pair.indexOf("=");
    assert.ok(eq > 0, `malformed Set-Cookie: ${line}`);
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1).replace(/^"(.*)"$/, "$1");
    const expired = attributes.some((attribute) => {
      const [key = "", val = ""] = attribute.split("=", 2);
      if (key.toLowerCase() === "max-age") return Number(val) <= 0;
      if (key.toLowerCase() === "expires") return Date.parse(val) <= Date.now();
      return false;
    });
    if (expired) this.cookies.delete(name);
    else this.cookies.set(name, value);
  }
}

class Session {
  readonly jar: CookieJar;
  readonly api: Client<paths>;

  constructor(cookies?: ReadonlyMap<string, string>) {
    this.jar = new CookieJar(cookies);
    this.api = createClient<paths>({ baseUrl, bodySerializer: formBody });
    this.api.use(this.jar.middleware);
  }
}

interface Person {
  id: number;
  name: string;
  session: Session;
}

type Result<T, E> = { data?: T; error?: E; response: Response };

/** The success body, after checking the status; any other status fails with the error body the server sent. */
function expectData<T, E>(result: Result<T, E>, status: number, what: string): T {
  const { data, error, response } = result;
  assert.equal(
    response.status,
    status,
    `${what}: expected ${status}, got ${response.status} ${JSON.stringify(error ?? data)}`,
  );
  assert.ok(data !== undefined, `${what}: ${status} without a parsed body`);
  return data;
}

/** The `error` text of a failure response, after checking its status. */
function expectError<T, E extends { error: string }>(result: Result<T, E>, status: number, what: string): string {
  const { data, error, response } = result;
  assert.equal(
    response.status,
    status,
    `${what}: expected ${status}, got ${response.status} ${JSON.stringify(data ?? error)}`,
  );
  assert.ok(error !== undefined, `${what}: ${status} without an error body`);
  assert.equal(typeof error.error, "string", `${what}: error body ${JSON.stringify(error)}`);
  assert.ok(error.error.length > 0, `${what}: empty error message`);
  return error.error;
}

function step(what: string): void {
  console.log(`- ${what}`);
}

async function register(name: string): Promise<Person> {
  const session = new Session();
  const result = await session.api.POST("/user/{user_id}", {
    params: { path: { user_id: 0 } },
    body: { name, password: PASSWORD, email: `${name}@example.com` },
    ...FORM,
  });
  const created = expectData(result, 201, `register ${name}`);
  assert.equal(created.status, "ok");
  assert.ok(Number.isInteger(created.id) && created.id >= 1, `register ${name}: id ${created.id}`);
  assert.equal(result.response.headers.get("Location"), "/api/chats");
  assert.equal(session.jar.cookies.get("user_id"), String(created.id), `register ${name}: user_id cookie`);
  assert.ok((session.jar.cookies.get("token") ?? "").length >= 16, `register ${name}: token cookie`);
  return { id: created.id, name, session };
}

async function send(person: Person, chatId: number, content?: string, attachments?: number[]): Promise<number> {
  const result = await person.session.api.POST("/chats/{chat_id}", {
    params: { path: { chat_id: chatId } },
    body: { content, attachments },
    ...FORM,
  });
  const created = expectData(result, 201, `${person.name} sends ${JSON.stringify({ content, attachments })}`);
  assert.equal(created.status, "ok");
  return created.id;
}

async function history(person: Person, chatId: number, query: { limit?: number; before?: number; after?: number }) {
  const result = await person.session.api.GET("/chats/{chat_id}", { params: { path: { chat_id: chatId }, query } });
  return expectData(result, 200, `${person.name} reads chat ${chatId} ${JSON.stringify(query)}`).messages;
}

/** (id, sender_id, content) of each message, so a mismatch shows which message differs and how. */
function summary(messages: Message[]): [number, number, string][] {
  return messages.map((message) => [message.id, message.sender_id, message.content]);
}

step("register alice and bob");
const alice = await register("alice");
const bob = await register("bob");
assert.notEqual(alice.id, bob.id);

step("look bob up by name");
const found = expectData(
  await alice.session.api.GET("/user/{user_id}", { params: { path: { user_id: 0 }, query: { name: "bob" } } }),
  200,
  "get_user by name",
);
// A stranger sees no email (--email-visibility contacts, the default); a co-member does, below.
assert.deepEqual(found.user, { id: bob.id, name: "bob", email: null, avatar_url: null });

step("alice creates a chat and adds bob");
const createdChat = await alice.session.api.POST("/chats", { body: { title: "general" }, ...FORM });
const chatId = expectData(createdChat, 201, "create_chat").id;
assert.equal(createdChat.response.headers.get("Location"), `/api/chats/${chatId}`);
const added = await alice.session.api.POST("/chats/{chat_id}/members", {
  params: { path: { chat_id: chatId } },
  body: { name: "bob" },
  ...FORM,
});
assert.deepEqual(expectData(added, 201, "add_member bob"), { status: "ok" });
const addedAgain = await alice.session.api.POST("/chats/{chat_id}/members", {
  params: { path: { chat_id: chatId } },
  body: { user_id: bob.id },
  ...FORM,
});
expectError(addedAgain, 409, "add_member bob again");
const members = expectData(
  await bob.session.api.GET("/chats/{chat_id}/members", { params: { path: { chat_id: chatId } } }),
  200,
  "list_members",
);
assert.deepEqual(members.members, [
  { id: alice.id, name: "alice", avatar_url: null },
  { id: bob.id, name: "bob", avatar_url: null },
]);
// alice created the chat herself, so its members are her contacts and see her email; bob was added, so his stays
// hidden from alice until he shares a chat he joined himself with her.
const contact = expectData(
  await bob.session.api.GET("/user/{user_id}", { params: { path: { user_id: alice.id } } }),
  200,
  "get_user of a co-member",
);
assert.equal(contact.user.email, "alice@example.com");

step("alice and bob send messages both ways");
const lines: [Person, string][] = [
  [alice, "hi bob"],
  [bob, "hi alice"],
  [alice, "how are you?"],
  [bob, "fine, and you? ünïcødé ✓ & = + %"],
  [alice, "bye"],
];
const sent: [number, number, string][] = [];
for (const [person, content] of lines) {
  sent.push([await send(person, chatId, content), person.id, content]);
}
const ids = sent.map(([id]) => id);
assert.deepEqual(
  ids,
  [...ids].sort((a, b) => a - b),
  "message ids grow in sending order",
);
assert.equal(new Set(ids).size, ids.length, "message ids are unique");
const [m1, m2, m3, m4, m5] = sent as [
  [number, number, string],
  [number, number, string],
  [number, number, string],
  [number, number, string],
  [number, number, string],
];

step("bob reads the whole chat");
const all = await history(bob, chatId, {});
assert.deepEqual(summary(all), sent);
for (const message of all) {
  assert.match(message.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, `message ${message.id} time`);
}
const times = all.map((message) => Date.parse(message.time));
assert.deepEqual(
  times,
  [...times].sort((a, b) => a - b),
  "times are oldest first",
);

step("page back through history with limit and before");
assert.deepEqual(summary(await history(alice, chatId, { limit: 2 })), [m4, m5]);
assert.deepEqual(summary(await history(alice, chatId, { limit: 2, before: m4[0] })), [m2, m3]);
assert.deepEqual(summary(await history(alice, chatId, { limit: 2, before: m2[0] })), [m1]);
assert.deepEqual(summary(await history(alice, chatId, { limit: 2, before: m1[0] })), []);
assert.deepEqual(summary(await history(alice, chatId, { limit: 2, after: m1[0] })), [m2, m3]);
expectError(
  await alice.session.api.GET("/chats/{chat_id}", { params: { path: { chat_id: chatId }, query: { limit: 0 } } }),
  400,
  "limit=0",
);

step("the chat list shows the last message");
const chats = expectData(await bob.session.api.GET("/chats"), 200, "list_chats").chats;
assert.equal(chats.length, 1);
assert.equal(chats[0]?.id, chatId);
assert.equal(chats[0]?.title, "general");
assert.equal(chats[0]?.last_message, m5[2]);
assert.equal(chats[0]?.sender_id, alice.id);
assert.equal(chats[0]?.last_message_time, all[4]?.time);

step("delete a message");
expectError(
  await bob.session.api.DELETE("/chats/{chat_id}", { params: { path: { chat_id: chatId }, query: { id: m3[0] } } }),
  403,
  "bob deletes alice's message",
);
const deleted = await alice.session.api.DELETE("/chats/{chat_id}", {
  params: { path: { chat_id: chatId }, query: { id: m3[0] } },
});
assert.deepEqual(expectData(deleted, 200, "delete_message"), { status: "ok" });
assert.deepEqual(summary(await history(bob, chatId, {})), [m1, m2, m4, m5]);
assert.deepEqual(summary(await history(bob, chatId, { limit: 2, before: m4[0] })), [m1, m2]);
expectError(
  await alice.session.api.DELETE("/chats/{chat_id}", { params: { path: { chat_id: chatId }, query: { id: m3[0] } } }),
  404,
  "delete_message again",
);

step("alice uploads a PNG, sends it as a message of files only, and bob downloads it");
const uploaded = await alice.session.api.POST("/uploads", {
  ...multipart({ file: new Blob([PNG], { type: "image/png" }), filename: "dot.png" }),
});
const upload = expectData(uploaded, 201, "upload_file");
assert.equal(uploaded.response.headers.get("Location"), `/api/uploads/${upload.id}`);
assert.deepEqual(upload, {
  id: upload.id,
  name: "dot.png",
  content_type: "image/png",
  size: PNG.length,
  sha256: createHash("sha256").update(PNG).digest("hex"),
  url: `/api/uploads/${upload.id}/dot.png`,
  width: 3,
  height: 2,
  thumbnail_url: `/api/uploads/${upload.id}/thumbnail`,
});
expectError(
  await bob.session.api.GET("/uploads/{upload_id}", { params: { path: { upload_id: upload.id } } }),
  404,
  "bob downloads alice's upload before it is in a chat he is in",
);
const withFile = await send(alice, chatId, undefined, [upload.id]);
const filePage = await history(bob, chatId, { after: m5[0] });
assert.deepEqual(summary(filePage), [[withFile, alice.id, ""]]);
const [fileMessage] = filePage as [Message];
assert.deepEqual(fileMessage.attachments, [
  {
    id: upload.id,
    name: "dot.png",
    content_type: "image/png",
    size: PNG.length,
    url: upload.url,
    thumbnail_url: upload.thumbnail_url,
    width: 3,
    height: 2,
  },
]);
const downloaded = await bob.session.api.GET("/uploads/{upload_id}", {
  params: { path: { upload_id: upload.id } },
  parseAs: "arrayBuffer",
});
const bytes = Buffer.from(expectData(downloaded, 200, "download_upload"));
assert.ok(bytes.equals(PNG), `the download differs from the upload: ${bytes.toString("base64")}`);
assert.equal(downloaded.response.headers.get("Content-Type"), "image/png");
assert.equal(downloaded.response.headers.get("ETag"), `"${upload.sha256}"`);
const named = await bob.session.api.GET("/uploads/{upload_id}/{filename}", {
  params: { path: { upload_id: upload.id, filename: "dot.png" } },
  parseAs: "arrayBuffer",
});
assert.ok(Buffer.from(expectData(named, 200, "download_named_upload")).equals(PNG));
const thumbnail = await bob.session.api.GET("/uploads/{upload_id}/thumbnail", {
  params: { path: { upload_id: upload.id } },
  parseAs: "arrayBuffer",
});
const thumbnailBytes = Buffer.from(expectData(thumbnail, 200, "download_thumbnail"));
assert.equal(thumbnail.response.headers.get("Content-Type"), "image/webp");
assert.equal(thumbnailBytes.subarray(0, 4).toString("latin1"), "RIFF");
assert.equal(thumbnailBytes.subarray(8, 12).toString("latin1"), "WEBP");

step("a file that is no image, under a name part, with text; two attachments in order");
const notes = Buffer.from("line one\nline two\n");
const text = expectData(
  await alice.session.api.POST("/uploads", {
    ...multipart({ file: new Blob([notes]), filename: "ignored.bin", name: "minutes/today.txt" }),
  }),
  201,
  "upload_file of text",
);
assert.equal(text.name, "minutes_today.txt");
assert.deepEqual([text.width, text.height, text.thumbnail_url], [null, null, null]);
expectError(
  await alice.session.api.GET("/uploads/{upload_id}/thumbnail", { params: { path: { upload_id: text.id } } }),
  404,
  "download_thumbnail of a text file",
);
const both = await send(alice, chatId, "the minutes, and the dot again", [text.id, upload.id]);
const sentBoth = expectData(
  await bob.session.api.GET("/chats/{chat_id}/messages/{message_id}", {
    params: { path: { chat_id: chatId, message_id: both } },
  }),
  200,
  "get_message with two attachments",
);
assert.equal(sentBoth.content, "the minutes, and the dot again");
assert.deepEqual(
  sentBoth.attachments.map((attachment) => attachment.id),
  [text.id, upload.id],
);
const textBytes = await bob.session.api.GET("/uploads/{upload_id}", {
  params: { path: { upload_id: text.id } },
  parseAs: "arrayBuffer",
});
assert.ok(Buffer.from(expectData(textBytes, 200, "download_upload of text")).equals(notes));
assert.match(textBytes.response.headers.get("Content-Disposition") ?? "", /^attachment;/);
const withFiles: [number, number, string][] = [
  [withFile, alice.id, ""],
  [both, alice.id, "the minutes, and the dot again"],
];

step("alice logs out; her old cookies are refused");
const oldCookies = new Map(alice.session.jar.cookies);
assert.deepEqual([...oldCookies.keys()].sort(), ["token", "user_id"]);
const loggedOut = await alice.session.api.GET("/logout");
assert.deepEqual(expectData(loggedOut, 200, "logout"), { status: "ok" });
assert.equal(loggedOut.response.headers.get("Location"), "/api/login");
assert.equal(alice.session.jar.cookies.size, 0, `logout left cookies: ${[...alice.session.jar.cookies.keys()]}`);
const replay = new Session(oldCookies);
expectError(await replay.api.GET("/chats"), 401, "list_chats with the logged-out cookies");
expectError(
  await replay.api.POST("/chats/{chat_id}", { params: { path: { chat_id: chatId } }, body: { content: "ghost" }, ...FORM }),
  401,
  "send_message with the logged-out cookies",
);
expectError(await replay.api.GET("/logout"), 401, "logout with the logged-out cookies");
expectError(await alice.session.api.GET("/chats"), 401, "list_chats with no cookies");

step("bob's session is unaffected");
assert.deepEqual(summary(await history(bob, chatId, {})), [m1, m2, m4, m5, ...withFiles]);

console.log("scenario passed");
