"""Files: uploading, attaching, downloading, thumbnails, avatars, both stores, and collecting what nothing uses."""

import concurrent.futures
import datetime
import hashlib
import io
import json
import os
import socket
import time

import httpx
import pytest
from PIL import Image

from chat_server import models
from chat_server.core.times import utcnow
from chat_server.files import uploads

from .conftest import Person
from .live_server import live_server

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def png(width: int = 800, height: int = 600, color: str = "red", mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), color).save(out, "PNG")
    return out.getvalue()


def upload(person: Person, data: bytes, filename: str = "file.bin", **form) -> dict:
    response = person.client.post(
        "/api/uploads", files={"file": (filename, data, "application/octet-stream")}, data=form
    )
    assert response.status_code == 201, response.text
    return response.json()


def attach(person: Person, chat_id: int, *upload_ids: int, content: str | None = None):
    form = {"attachments": ",".join(str(i) for i in upload_ids)}
    if content is not None:
        form["content"] = content
    return person.client.post(f"/api/chats/{chat_id}", data=form)


@pytest.fixture(autouse=True, params=["files", "database"])
def store(request, monkeypatch, tmp_path):
    """Every test, with each store: files in a directory, or chunks in the database."""
    monkeypatch.setenv("CHAT_UPLOADS", "database" if request.param == "database" else str(tmp_path / "blobs"))
    return request.param


def test_upload_file_image_answers_size_and_thumbnail(store, alice):
    data = png(800, 600)
    stored = upload(alice, data, "photo.png")

    assert stored["content_type"] == "image/png"
    assert (stored["width"], stored["height"], stored["size"]) == (800, 600, len(data))
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert stored["url"] == f"/api/uploads/{stored['id']}/photo.png"
    downloaded = alice.client.get(stored["url"])
    assert downloaded.status_code == 200 and downloaded.content == data
    assert downloaded.headers["content-disposition"].startswith("inline")
    thumbnail = alice.client.get(stored["thumbnail_url"])
    assert thumbnail.status_code == 200
    assert Image.open(io.BytesIO(thumbnail.content)).size == (400, 300)


def test_upload_file_same_bytes_are_stored_once(store, alice, bob):
    data = os.urandom(600_000)  # more than two database chunks
    first, second = upload(alice, data), upload(bob, data)

    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert models.Blob.select().where(models.Blob.sha256 == first["sha256"]).count() == 1
    assert bob.client.get(second["url"]).content == data


def test_upload_file_thumbnail_is_upright_and_without_metadata(alice):
    image = Image.new("RGB", (300, 100), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to show
    exif[0x010F] = "SecretCam"
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())

    stored = upload(alice, out.getvalue(), "turned.jpg")
    thumbnail = alice.client.get(stored["thumbnail_url"]).content

    shown = Image.open(io.BytesIO(thumbnail))
    assert shown.size == (100, 300)
    assert b"SecretCam" not in thumbnail and not shown.getexif()


def test_upload_file_html_claiming_png_is_not_shown_inline(alice):
    stored = upload(alice, b"<html><script>alert(document.cookie)</script></html>", "cute.png")

    assert stored["thumbnail_url"] is None and stored["width"] is None
    served = alice.client.get(stored["url"])
    assert served.headers["content-type"] == "application/octet-stream"
    assert served.headers["content-disposition"].startswith("attachment")
    assert served.headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert served.headers["x-content-type-options"] == "nosniff"


def test_upload_file_png_signature_on_html_is_not_an_image(alice):
    stored = upload(alice, b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>", "x.png")
    assert stored["content_type"] == "application/octet-stream" and stored["thumbnail_url"] is None
    assert alice.client.get(stored["url"]).headers["content-disposition"].startswith("attachment")


def test_upload_file_svg_with_script_is_an_attachment(alice):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    stored = upload(alice, svg, "logo.svg")

    served = alice.client.get(stored["url"])
    assert stored["thumbnail_url"] is None
    assert served.headers["content-disposition"].startswith("attachment")
    assert served.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("declared", "stored"),
    [
        ("../../etc/passwd", "_.._etc_passwd"),
        ("a\\b.txt", "a_b.txt"),
        ("evil\x00name.txt", "evilname.txt"),
        ("invoice\u202egnp.exe", "invoicegnp.exe"),
        ("\u2066x\u2069.pdf", "x.pdf"),
        (" . ", "file"),
        ("é" * 300, "é" * 127),
    ],
)
def test_upload_file_name_is_sanitised(alice, declared, stored):
    answered = upload(alice, b"data", "ignored.bin", name=declared)
    assert answered["name"] == stored
    assert len(answered["name"].encode()) <= 255


def test_upload_file_long_filename_is_cut_to_255_bytes(alice):
    answered = upload(alice, b"data", "a" * 300 + ".txt")
    assert answered["name"] == "a" * 255


def test_upload_file_content_disposition_carries_the_exact_name(alice):
    stored = upload(alice, PDF, "Ünïcode “report”.pdf")
    disposition = alice.client.get(stored["url"]).headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    assert "filename*=UTF-8''%C3%9Cn%C3%AFcode%20%E2%80%9Creport%E2%80%9D.pdf" in disposition


def test_upload_file_decompression_bomb_is_400(alice):
    bomb = png(10_000, 10_000, color="white", mode="1")  # 100 megapixels in about 12 KB
    assert len(bomb) < 100_000

    response = alice.client.post("/api/uploads", files={"file": ("bomb.png", bomb, "image/png")})

    assert response.status_code == 400
    assert "pixels" in response.json()["error"]
    assert models.Upload.select().count() == 0


def test_upload_file_without_a_file_part_is_400(alice):
    response = alice.client.post("/api/uploads", files={"name": (None, "x")})
    assert response.status_code == 400
    assert response.json() == {"error": "the form has no file part"}


def test_upload_file_undeclared_field_is_400(alice):
    response = alice.client.post("/api/uploads", files={"file": ("a", b"x"), "extra": (None, "y")})
    assert response.status_code == 400
    assert "extra" in response.json()["error"]


def test_upload_file_form_urlencoded_is_415(alice):
    response = alice.client.post("/api/uploads", data={"file": "x"})
    assert response.status_code == 415


def test_upload_file_needs_a_session(client):
    response = client.post("/api/uploads", files={"file": ("a", b"x")})
    assert response.status_code == 401


@pytest.fixture
def small_uploads(monkeypatch):
    monkeypatch.setenv("CHAT_MAX_UPLOAD_SIZE", "100K")
    monkeypatch.setenv("CHAT_UPLOAD_QUOTA", "250K")


def test_upload_file_over_max_size_is_413(small_uploads, alice):
    response = alice.client.post("/api/uploads", files={"file": ("big", b"x" * 100 * 1024 + b"x")})
    assert response.status_code == 413
    assert response.json()["error"]
    assert models.Upload.select().count() == 0


def test_upload_file_at_max_size_is_stored(small_uploads, alice):
    assert upload(alice, b"x" * 100 * 1024)["size"] == 100 * 1024


def test_upload_file_chunked_body_over_max_size_is_413(small_uploads, alice):
    body = b"--b\r\nContent-Disposition: form-data; name=file; filename=a\r\n\r\n" + b"x" * 200_000 + b"\r\n--b--\r\n"

    def chunks():
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    response = alice.client.post(
        "/api/uploads", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 413
    assert models.Upload.select().count() == 0


def test_upload_file_over_quota_says_what_is_left(small_uploads, alice):
    upload(alice, b"a" * 100 * 1024)
    upload(alice, b"b" * 100 * 1024)

    response = alice.client.post("/api/uploads", files={"file": ("c", b"c" * 60 * 1024)})

    assert response.status_code == 413
    assert response.json() == {
        "error": f"the file is {60 * 1024} bytes and {50 * 1024} bytes are left of your upload quota"
    }


def test_upload_file_twenty_at_once_all_stored_within_quota(small_uploads, alice):
    files = [os.urandom(12 * 1024) for _ in range(25)]  # 300 KiB in all: the quota (250 KiB) takes 20

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda data: alice.client.post("/api/uploads", files={"file": ("f", data)}), files))

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 20 + [413] * 5
    stored = {answer.json()["sha256"] for answer in answers if answer.status_code == 201}
    assert stored == {hashlib.sha256(data).hexdigest() for data in files} & stored
    assert models.Upload.select().count() == 20


@pytest.fixture
def two_uploads_an_hour(monkeypatch):
    monkeypatch.setenv("CHAT_UPLOAD_RATE", "2/3600")


def test_upload_file_over_the_rate_is_429(two_uploads_an_hour, make_user):
    person = make_user()
    assert person.client.post("/api/uploads", files={"file": ("a", b"1")}).status_code == 201
    assert person.client.post("/api/uploads", files={"file": ("a", b"2")}).status_code == 201
    refused = person.client.post("/api/uploads", files={"file": ("a", b"3")})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1


async def _cut_off(app, cookies: str, body: bytes) -> list[dict]:
    """Send half an upload's body, then go away, straight through ASGI; what the app sent back."""
    messages = iter(
        [
            {"type": "http.request", "body": body[: len(body) // 2], "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent = []

    async def receive():
        return next(messages, {"type": "http.disconnect"})

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/uploads",
        "raw_path": b"/api/uploads",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"multipart/form-data; boundary=b"),
            (b"content-length", str(len(body)).encode()),
            (b"cookie", cookies.encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return sent


def test_upload_file_cut_off_halfway_leaves_no_file_and_no_row(app, alice, tmp_path):
    import anyio

    body = b"--b\r\nContent-Disposition: form-data; name=file; filename=a\r\n\r\n" + os.urandom(3_000_000)
    body += b"\r\n--b--\r\n"
    cookies = "; ".join(f"{name}={value}" for name, value in alice.client.cookies.items())

    anyio.run(_cut_off, app, cookies, body)

    assert models.Upload.select().count() == 0 and models.Blob.select().count() == 0
    assert blob_files() == []
    store = uploads.settings.store
    if isinstance(store, uploads.stores.FileStore):  # the database store's spools are anonymous: nothing to find
        assert list(store.spools.iterdir()) == []


def test_send_message_with_attachments_and_no_text(alice, bob, make_chat):
    chat_id = make_chat(alice, members=(bob,))
    image, pdf = upload(alice, png(), "a.png"), upload(alice, PDF, "doc.pdf")

    sent = attach(alice, chat_id, image["id"], pdf["id"])

    assert sent.status_code == 201
    (message,) = bob.client.get(f"/api/chats/{chat_id}").json()["messages"]
    assert message["content"] == ""
    assert [a["id"] for a in message["attachments"]] == [image["id"], pdf["id"]]
    assert message["attachments"][1] == {
        "id": pdf["id"],
        "name": "doc.pdf",
        "content_type": "application/pdf",
        "size": len(PDF),
        "url": pdf["url"],
        "thumbnail_url": None,
        "width": None,
        "height": None,
    }
    assert bob.client.get(pdf["url"]).content == PDF
    assert bob.client.get(image["thumbnail_url"]).status_code == 200


def test_send_message_attachments_reach_the_event_stream_and_search(alice, bob, make_chat):
    chat_id = make_chat(alice, members=(bob,))
    stored = upload(alice, PDF, "plan.pdf")

    attach(alice, chat_id, stored["id"], content="the quarterly plan")

    events = bob.client.get("/api/events", params={"last_event_id": 0}, headers={"accept": "application/json"})
    created = [e for e in events.json()["events"] if e["type"] == "message.created"]
    assert created[-1]["data"]["message"]["attachments"][0]["id"] == stored["id"]
    hits = bob.client.get("/api/search", params={"q": "quarterly"}).json()["messages"]
    assert hits[0]["attachments"][0]["name"] == "plan.pdf"


def test_send_message_plain_text_has_empty_attachments(alice, make_chat, send):
    chat_id = make_chat(alice)
    message_id = send(alice, chat_id, "hello")
    assert alice.client.get(f"/api/chats/{chat_id}/messages/{message_id}").json()["attachments"] == []


def test_send_message_with_someone_elses_upload_is_404(alice, bob, make_chat):
    chat_id = make_chat(bob)
    theirs = upload(alice, PDF)

    response = attach(bob, chat_id, theirs["id"], content="mine now")

    assert response.status_code == 404
    assert bob.client.get(f"/api/chats/{chat_id}").json()["messages"] == []
    assert bob.client.get(theirs["url"]).status_code == 404


def test_send_message_neither_text_nor_files_is_400(alice, make_chat):
    chat_id = make_chat(alice)
    assert alice.client.post(f"/api/chats/{chat_id}", data={}).status_code == 400


def test_send_message_eleven_attachments_is_400(alice, make_chat):
    chat_id = make_chat(alice)
    ids = [upload(alice, bytes([n]))["id"] for n in range(11)]
    assert attach(alice, chat_id, *ids, content="x").status_code == 400


def test_send_message_not_a_member_with_attachments_is_403_and_leaves_it_unused(alice, bob, make_chat):
    chat_id = make_chat(alice)
    mine = upload(bob, PDF)
    assert attach(bob, chat_id, mine["id"], content="hi").status_code == 403
    assert models.Upload.get_by_id(mine["id"]).used_at is None


def test_download_upload_stranger_gets_404(alice, bob, make_user, make_chat):
    carol = make_user("carol")
    chat_id = make_chat(alice, members=(bob,))
    stored = upload(alice, PDF)
    attach(alice, chat_id, stored["id"], content="doc")

    assert bob.client.get(stored["url"]).status_code == 200
    assert carol.client.get(stored["url"]).status_code == 404
    assert carol.client.get(f"/api/uploads/{stored['id']}").status_code == 404


def test_download_upload_unattached_is_the_uploaders_only(alice, bob):
    stored = upload(alice, png(), "p.png")
    assert alice.client.get(stored["url"]).status_code == 200
    assert bob.client.get(stored["url"]).status_code == 404
    assert bob.client.get(stored["thumbnail_url"]).status_code == 404


def test_download_upload_after_leaving_the_only_chat_is_404(alice, bob, make_chat):
    chat_id = make_chat(alice, members=(bob,))
    stored = upload(alice, PDF)
    attach(alice, chat_id, stored["id"], content="doc")

    assert bob.client.delete("/api/chats", params={"chat_id": chat_id}).status_code == 200

    assert bob.client.get(stored["url"]).status_code == 404


def test_download_upload_range_gives_206(alice):
    data = bytes(range(256)) * 4
    stored = upload(alice, data)

    part = alice.client.get(stored["url"], headers={"range": "bytes=10-19"})
    tail = alice.client.get(stored["url"], headers={"range": "bytes=-24"})
    rest = alice.client.get(stored["url"], headers={"range": "bytes=1000-"})

    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert tail.content == data[-24:] and rest.content == data[1000:]


def test_download_upload_range_past_the_end_is_416(alice):
    stored = upload(alice, b"0123456789")
    response = alice.client.get(stored["url"], headers={"range": "bytes=10-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */10"
    assert response.json()["error"]


@pytest.mark.parametrize("header", ["items=0-1", "bytes=0-1,4-5", "0", "bytes=-"])
def test_download_upload_range_of_another_form_is_ignored(alice, header):
    stored = upload(alice, b"0123456789")
    response = alice.client.get(stored["url"], headers={"range": header})
    assert response.status_code == 200 and response.content == b"0123456789"


def test_download_upload_if_none_match_gives_304(alice):
    stored = upload(alice, PDF)
    first = alice.client.get(stored["url"])
    assert first.headers["etag"] == f'"{stored["sha256"]}"'
    assert first.headers["cache-control"] == "private, max-age=0, must-revalidate"

    again = alice.client.get(stored["url"], headers={"if-none-match": first.headers["etag"]})

    assert again.status_code == 304 and again.content == b""


def test_download_named_upload_ignores_the_name(alice):
    stored = upload(alice, PDF, "a.pdf")
    assert alice.client.get(f"/api/uploads/{stored['id']}/anything.txt").content == PDF


def test_download_thumbnail_of_a_non_image_is_404(alice):
    stored = upload(alice, PDF)
    assert alice.client.get(f"/api/uploads/{stored['id']}/thumbnail").status_code == 404


def test_set_avatar_shows_on_the_user_and_tells_the_members(alice, bob, make_user, make_chat):
    carol = make_user("carol")
    chat_id = make_chat(alice, members=(bob,))
    picture = upload(alice, png(), "me.png")

    response = alice.client.put(f"/api/user/{alice.id}/avatar", data={"upload_id": picture["id"]})

    assert response.status_code == 200
    avatar = f"/api/uploads/{picture['id']}/thumbnail"
    assert response.json()["user"]["avatar_url"] == avatar
    assert carol.client.get(f"/api/user/{alice.id}").json()["user"]["avatar_url"] == avatar
    assert carol.client.get(avatar).status_code == 200  # an avatar is anyone's to see
    members = bob.client.get(f"/api/chats/{chat_id}/members").json()["members"]
    assert members[0]["avatar_url"] == avatar
    events = bob.client.get("/api/events", params={"last_event_id": 0}, headers={"accept": "application/json"})
    updated = [e["data"] for e in events.json()["events"] if e["type"] == "user.updated"]
    assert updated == [{"chat_id": chat_id, "user": {"id": alice.id, "name": "alice", "avatar_url": avatar}}]


def test_set_avatar_not_an_image_is_409(alice):
    stored = upload(alice, PDF)
    response = alice.client.put(f"/api/user/{alice.id}/avatar", data={"upload_id": stored["id"]})
    assert response.status_code == 409


def test_set_avatar_of_someone_else_is_403(alice, bob):
    picture = upload(bob, png())
    assert bob.client.put(f"/api/user/{alice.id}/avatar", data={"upload_id": picture["id"]}).status_code == 403


def test_set_avatar_from_someone_elses_upload_is_404(alice, bob):
    picture = upload(alice, png())
    assert bob.client.put(f"/api/user/{bob.id}/avatar", data={"upload_id": picture["id"]}).status_code == 404


def test_remove_avatar(alice):
    picture = upload(alice, png())
    alice.client.put(f"/api/user/{alice.id}/avatar", data={"upload_id": picture["id"]})

    response = alice.client.delete(f"/api/user/{alice.id}/avatar")

    assert response.status_code == 200 and response.json()["user"]["avatar_url"] is None


def test_rename_tells_the_members(alice, bob, make_chat):
    chat_id = make_chat(alice, members=(bob,))
    alice.client.put(f"/api/user/{alice.id}", data={"name": "alicia"})
    events = bob.client.get("/api/events", params={"last_event_id": 0}, headers={"accept": "application/json"})
    updated = [e["data"]["user"]["name"] for e in events.json()["events"] if e["type"] == "user.updated"]
    assert updated == ["alicia"] and chat_id


def later(**delta) -> datetime.datetime:
    return utcnow() + datetime.timedelta(**delta)


def blob_files() -> list[str]:
    store = uploads.settings.store
    if isinstance(store, uploads.stores.DatabaseStore):
        return sorted({sha for (sha,) in models.BlobChunk.select(models.BlobChunk.sha256).tuples()})
    return sorted(path.name for path in store.root.rglob("*") if path.is_file() and path.parent != store.spools)


def test_collect_deletes_an_unused_upload_after_the_ttl(store, alice):
    stored = upload(alice, png(), "p.png")
    assert len(blob_files()) == 2  # the image and its thumbnail

    assert uploads.collect(now=later(hours=23)) == 0
    assert uploads.collect(now=later(hours=25)) == 1

    assert blob_files() == [] and models.Blob.select().count() == 0
    assert alice.client.get(stored["url"]).status_code == 404


def test_collect_keeps_attached_uploads_and_avatars(alice, make_chat):
    chat_id = make_chat(alice)
    attached, avatar = upload(alice, PDF), upload(alice, png())
    attach(alice, chat_id, attached["id"], content="x")
    alice.client.put(f"/api/user/{alice.id}/avatar", data={"upload_id": avatar["id"]})

    assert uploads.collect(now=later(days=30)) == 0
    assert alice.client.get(attached["url"]).status_code == 200


def test_collect_deletes_the_blob_with_its_last_message(store, alice, make_chat):
    chat_id = make_chat(alice)
    stored = upload(alice, PDF)
    message_id = attach(alice, chat_id, stored["id"], content="x").json()["id"]

    alice.client.delete(f"/api/chats/{chat_id}", params={"id": message_id})
    uploads.collect(now=later(minutes=2))

    assert blob_files() == [] and models.Upload.select().count() == 0


def test_collect_keeps_a_blob_another_upload_still_has(alice, bob, make_chat):
    chat_id = make_chat(alice)
    data = os.urandom(1000)
    first, second = upload(alice, data), upload(bob, data)
    message_id = attach(alice, chat_id, first["id"], content="x").json()["id"]
    attach(bob, make_chat(bob), second["id"], content="y")

    alice.client.delete(f"/api/chats/{chat_id}", params={"id": message_id})
    uploads.collect(now=later(minutes=2))

    assert blob_files() == [second["sha256"]]
    assert bob.client.get(second["url"]).content == data


def test_collect_after_the_chat_is_purged_and_the_account_deleted(alice, bob, make_chat):
    chat_id = make_chat(alice)
    stored = upload(alice, PDF)
    attach(alice, chat_id, stored["id"], content="x")
    picture = upload(bob, png())
    bob.client.put(f"/api/user/{bob.id}/avatar", data={"upload_id": picture["id"]})

    alice.client.delete("/api/chats", params={"chat_id": chat_id})  # the last member leaves: purged
    bob.client.delete(f"/api/user/{bob.id}")
    uploads.collect(now=later(minutes=2))

    assert models.Upload.select().count() == 0 and blob_files() == []


def test_collect_keeps_the_quota_exact(small_uploads, alice):
    upload(alice, b"a" * 100 * 1024)
    upload(alice, b"b" * 100 * 1024)
    assert alice.client.post("/api/uploads", files={"file": ("c", b"c" * 100 * 1024)}).status_code == 413

    uploads.collect(now=later(days=2))

    assert upload(alice, b"c" * 100 * 1024)["size"] == 100 * 1024


def test_restart_removes_spools_a_crash_left(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAT_UPLOADS", str(tmp_path / "blobs"))
    (tmp_path / "blobs" / "tmp").mkdir(parents=True)
    (tmp_path / "blobs" / "tmp" / "upload-abandoned").write_bytes(b"half")

    uploads.configure(os.environ, f"sqlite:///{tmp_path / 'chat.db'}")

    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_upload_file_that_arrives_too_slowly_is_408():
    with live_server("--request-timeout", "1") as server:
        form = {"name": "slow", "password": "correct horse", "email": "slow@example.com"}
        cookies = httpx.post(f"{server.api_url}/user/0", data=form).cookies
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            head = (
                "POST /api/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                f"Cookie: user_id={cookies['user_id']}; token={cookies['token']}\r\n"
                "Content-Length: 100000\r\n\r\n"
            )
            sock.sendall(head.encode() + b"--b\r\n")
            sock.settimeout(10)
            started, answer = time.monotonic(), b""
            while b"\r\n\r\n" not in answer:
                piece = sock.recv(4096)
                if not piece:
                    break
                answer += piece
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert time.monotonic() - started < 10
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1] or b'{"error": "?"}')["error"]
