"""Issue 27, uploads: a hostile file cannot take the server down. A JPEG that repeats a scan
thousands of times is refused before Pillow decodes a pixel; pictures are decoded once, in a
child process with a time and a memory limit, at a reduced scale where the format allows; a
full decoding pool answers 503;
unsent uploads have a quota per user; only PNG, JPEG, GIF and WebP (by their bytes) are served
inline, everything else as application/octet-stream downloads. Real PostgreSQL and Redis when
TEST_DATABASE_URL and TEST_REDIS_URL are set."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import zlib

import pytest
from PIL import Image, ImageFile

from simplechat.attachments import decoding
from simplechat.attachments.decoding import examine_in_child
from simplechat.attachments.images import (
    MAX_SEGMENTS,
    BadImage,
    examine_image,
    gif_blocks,
    jpeg_scans,
    png_chunks,
)
from simplechat.attachments.store import attachment_store
from simplechat.infra.offload import offload_pool
from simplechat.models import Attachment
from tests.conftest import app_in_context
from tests.test_richer_messages import count, emit, login, png_bytes, send, upload


@pytest.fixture
def app(database_uri, redis_url):
    yield from app_in_context(database_uri, redis_url, CHAT_RATE_LIMIT="off",
                              CHAT_UPLOAD_RATE_LIMIT="off")


@pytest.fixture
def pair(app, make_user, make_conversation, socket_client):
    ada, bob = make_user("ada"), make_user("bob")
    direct = make_conversation(ada, bob)
    a = socket_client(ada)
    assert emit(a, "join", {"conversation_id": direct.id})["ok"]
    return ada, bob, direct, a


def stored_files() -> list[str]:
    return [f for _, _, files in os.walk(attachment_store().root) for f in files]


@pytest.fixture
def decodes(monkeypatch) -> list[tuple[int, tuple[int, int]]]:
    """Every decode Pillow runs in this process from here on, as (thread id, size decoded at):
    a spy on ``ImageFile.load`` that calls the real one. (The server decodes in a child
    process, which the spy does not see: it watches ``examine_image`` called here.)"""
    seen: list[tuple[int, tuple[int, int]]] = []
    real_load = ImageFile.ImageFile.load

    def load(self):
        if self.tile:  # not decoded yet: this call decodes
            seen.append((threading.get_ident(), self.size))
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


# --------------------------------------------------------------------------- JPEG files


def progressive_jpeg(size=(256, 256), mode="L", flat: bool = False) -> bytes:
    out = io.BytesIO()
    picture = (Image.new(mode, size, "grey") if flat
               else Image.linear_gradient("L").resize(size).convert(mode))
    picture.save(out, format="JPEG", progressive=True, quality=85)
    return out.getvalue()


def segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment after SOI, a scan's data included in its SOS
    segment: written out here, apart from the server's counting."""
    found, at = [], 2
    while at < len(jpeg):
        assert jpeg[at] == 0xFF, f"no marker at {at}"
        marker = jpeg[at + 1]
        if marker == 0xD9:
            found.append((marker, at, at + 2))
            break
        end = at + 2 + int.from_bytes(jpeg[at + 2:at + 4], "big")
        if marker == 0xDA:  # the scan's data: up to a marker that is no stuffed zero or RSTn
            while not (jpeg[end] == 0xFF and jpeg[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        found.append((marker, at, end))
        at = end
    return found


def scan_bomb(repeats: int, size=(256, 256)) -> bytes:
    """A progressive greyscale JPEG whose last AC scan (Ss=1..63) is repeated ``repeats`` times
    before EOI: a few bytes each (an even grey has no AC detail), and each one decoded over the
    whole picture."""
    jpeg = progressive_jpeg(size, flat=True)
    _, start, end = [s for s in segments(jpeg) if s[0] == 0xDA][-1]
    assert jpeg[start + 7:start + 9] == b"\x01\x3f"  # Ss=1, Se=63
    return jpeg[:end] + jpeg[start:end] * repeats + jpeg[end:]


def test_scans_are_counted_from_the_marker_segments():
    honest_grey, honest_colour = progressive_jpeg(), progressive_jpeg(mode="RGB")
    assert jpeg_scans(honest_grey, 100) == 6  # libjpeg's progression for one component
    assert jpeg_scans(honest_colour, 100) == 10  # and for three
    baseline = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(baseline, format="JPEG")
    assert jpeg_scans(baseline.getvalue(), 100) == 1
    # Counting stops one past the cap: a bomb is not walked to its end.
    assert jpeg_scans(scan_bomb(20_000), 32) == 33
    assert jpeg_scans(scan_bomb(5_000), 100_000) == 6 + 5_000
    # 0xFFDA inside another segment is no scan (skipped by its length, as libjpeg does); stray
    # bytes and fill bytes between segments are passed over; nothing after EOI counts.
    fake_sos = b"\xff\xfe\x00\x06\xff\xda\x00\x02"  # a comment holding FF DA
    with_comment = honest_grey[:2] + fake_sos + honest_grey[2:]
    assert jpeg_scans(with_comment, 100) == 6
    first_sos = next(s for s in segments(honest_grey) if s[0] == 0xDA)[1]
    padded = honest_grey[:first_sos] + b"junk\xff\xff\xff" + honest_grey[first_sos:]
    assert jpeg_scans(padded, 100) == 6
    assert jpeg_scans(honest_grey + honest_grey, 100) == 6
    # A file of nothing but empty segments is refused once past MAX_SEGMENTS of them.
    comments = honest_grey[:2] + b"\xff\xfe\x00\x02" * (MAX_SEGMENTS + 1) + honest_grey[2:]
    with pytest.raises(BadImage):
        jpeg_scans(comments, 100)


def test_a_jpeg_repeating_a_scan_is_refused_before_it_is_decoded(app, pair, decodes, tmp_path):
    ada, bob, direct, a = pair
    assert app.config["CHAT_MAX_JPEG_SCANS"] == 32
    bomb = scan_bomb(2_000)
    assert len(bomb) < 30_000  # 2,006 scans in a few KB
    (tmp_path / "bomb.jpg").write_bytes(bomb)
    with pytest.raises(BadImage, match="more than 32 JPEG scans"):
        examine_image(str(tmp_path / "bomb.jpg"), "image/jpeg", 32)
    assert decodes == []  # refused from its markers: Pillow never decoded it
    response = upload(login(app, ada), direct.id, bomb, "bomb.jpg", "image/jpeg")
    assert (response.status_code, response.get_json()) == (
        400, {"ok": False, "error": "invalid_image"})
    assert count(Attachment) == 0 and stored_files() == []
    # Named and declared as anything else, its bytes still say JPEG: refused all the same.
    response = upload(login(app, ada), direct.id, bomb, "notes.bin", "application/pdf")
    assert response.status_code == 400 and count(Attachment) == 0


def test_the_scan_cap_is_a_setting_and_honest_progressive_jpegs_pass(app, pair, decodes):
    ada, bob, direct, a = pair
    http = login(app, ada)
    colour = progressive_jpeg((1200, 900), "RGB")
    accepted = upload(http, direct.id, colour, "photo.jpg", "image/jpeg")
    assert accepted.status_code == 201, accepted.get_json()
    assert accepted.get_json()["attachment"]["width"] == 1200
    app.config["CHAT_MAX_JPEG_SCANS"] = 9
    refused = upload(http, direct.id, colour, "photo.jpg", "image/jpeg")
    assert refused.get_json() == {"ok": False, "error": "invalid_image"}
    assert count(Attachment) == 1 and len(stored_files()) == 2  # the first file, its thumbnail


def test_a_truncated_progressive_jpeg_is_refused(app, pair):
    ada, bob, direct, a = pair
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    whole = progressive_jpeg((1600, 1200), "RGB")
    response = upload(login(app, ada), direct.id, whole[: len(whole) * 2 // 3], "cut.jpg")
    assert response.get_json() == {"ok": False, "error": "invalid_image"}
    assert count(Attachment) == 0 and stored_files() == []


def chunk(kind: bytes, data: bytes = b"") -> bytes:
    return (len(data).to_bytes(4, "big") + kind + data
            + zlib.crc32(kind + data).to_bytes(4, "big"))


def chunky_png(extra_chunks: int) -> bytes:
    """A 16 x 16 PNG with ``extra_chunks`` empty private chunks after its header: 12 bytes
    each, and each one read by Pillow in Python."""
    png = png_bytes((16, 16))
    header_end = 8 + 25  # signature, IHDR
    return png[:header_end] + chunk(b"prVt") * extra_chunks + png[header_end:]


def chatty_gif(sub_blocks: int) -> bytes:
    """A 16 x 16 GIF with a comment of ``sub_blocks`` one-byte sub-blocks before the picture."""
    out = io.BytesIO()
    Image.new("P", (16, 16)).save(out, format="GIF")
    gif = out.getvalue()
    start = 13 + (3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)
    return gif[:start] + b"\x21\xfe" + b"\x01x" * sub_blocks + b"\x00" + gif[start:]


def test_chunks_and_blocks_are_counted_before_pillow_reads_them():
    assert png_chunks(png_bytes()) == 3  # IHDR, IDAT, IEND
    assert png_chunks(chunky_png(100)) == 103
    with pytest.raises(BadImage):
        png_chunks(chunky_png(MAX_SEGMENTS))
    assert gif_blocks(chatty_gif(100)) == 101  # and the terminator
    with pytest.raises(BadImage):
        gif_blocks(chatty_gif(MAX_SEGMENTS))


@pytest.mark.parametrize("name, make", [
    ("chunky.png", lambda: chunky_png(800_000)),  # 9.6 MB of empty chunks: 6 s in Pillow
    ("chatty.gif", lambda: chatty_gif(100_000)),
    ("comments.jpg", lambda: (lambda j: j[:2] + b"\xff\xfe\x00\x02" * 100_000 + j[2:])(
        progressive_jpeg())),
])
def test_files_of_countless_tiny_segments_are_refused_before_they_are_opened(
        app, pair, decodes, monkeypatch, tmp_path, name, make):
    ada, bob, direct, a = pair
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *args, **kw: opened.append(args) or real_open(
        *args, **kw))
    padded = make()
    (tmp_path / name).write_bytes(padded)
    kind = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg"}[name[-4:]]
    with pytest.raises(BadImage, match=f"more than {MAX_SEGMENTS}"):
        examine_image(str(tmp_path / name), kind, 32)
    assert opened == [] and decodes == []
    response = upload(login(app, ada), direct.id, padded, name)
    assert response.get_json() == {"ok": False, "error": "invalid_image"}
    assert count(Attachment) == 0 and stored_files() == []
    # The same picture without the padding is taken.
    assert upload(login(app, ada), direct.id, {"chunky.png": lambda: chunky_png(10),
                                               "chatty.gif": lambda: chatty_gif(10),
                                               "comments.jpg": progressive_jpeg}[name](),
                  name).status_code == 201


# --------------------------------------------------------------------------- decoding


def test_pictures_are_decoded_once_a_jpeg_at_reduced_scale(decodes, tmp_path):
    (tmp_path / "big.png").write_bytes(png_bytes((2000, 1500)))
    png = examine_image(str(tmp_path / "big.png"), "image/png", 32)
    assert (png.width, png.height) == (2000, 1500)
    assert [size for _, size in decodes] == [(2000, 1500)]  # once: not to check, then to shrink
    (tmp_path / "big.jpg").write_bytes(progressive_jpeg((4000, 3000), "RGB"))
    jpeg = examine_image(str(tmp_path / "big.jpg"), "image/jpeg", 32)
    assert (jpeg.width, jpeg.height) == (4000, 3000)
    # libjpeg's 1/4 scale: 1000 x 750, at least twice the 320 x 240 thumbnail.
    assert [size for _, size in decodes] == [(2000, 1500), (1000, 750)]
    assert Image.open(io.BytesIO(jpeg.thumbnail)).size == (320, 240)


def picture(kind: str, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(out, format=kind)
    return out.getvalue()


def ramp_png(size=(8000, 5000)) -> bytes:
    """A picture of 40 million pixels (the limit) in about 130 KB: cheap to send, 160 MB and
    the best part of a second to decode."""
    ramp = Image.linear_gradient("L").resize(size)
    out = io.BytesIO()
    Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                        ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM))
                ).save(out, format="PNG", compress_level=9)
    return out.getvalue()


def decoding_children() -> list[int]:
    """Processes of this one running the picture decoder, zombies included."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = open(f"/proc/{entry.name}/status").read()
            command = open(f"/proc/{entry.name}/cmdline", "rb").read()
        except OSError:
            continue  # ended in between
        parent = next(line for line in status.splitlines() if line.startswith("PPid:"))
        if int(parent.split()[1]) == os.getpid() and (
                b"images.py" in command or "State:\tZ" in status):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("kind, content_type, size, thumb", [
    ("PNG", "image/png", (1000, 600), (320, 192)),
    ("JPEG", "image/jpeg", (600, 1000), (192, 320)),
    ("GIF", "image/gif", (640, 640), (320, 320)),
    ("WEBP", "image/webp", (200, 100), (200, 100)),
])
def test_pictures_are_decoded_in_a_child_process_never_in_this_one(
        app, pair, decodes, kind, content_type, size, thumb):
    ada, bob, direct, a = pair
    http = login(app, ada)
    response = upload(http, direct.id, picture(kind, size), "p.bin")
    assert response.status_code == 201, response.get_json()
    attachment = response.get_json()["attachment"]
    assert (attachment["content_type"], attachment["width"], attachment["height"]) == (
        content_type, *size)
    thumbnail = Image.open(io.BytesIO(http.get(attachment["thumbnail_url"]).data))
    assert (thumbnail.format, thumbnail.size) == ("WEBP", thumb)
    assert decodes == []  # the web process ran no decode of its own
    assert decoding_children() == []


def test_a_decode_past_the_time_limit_is_refused_and_its_child_killed(app, pair, caplog):
    ada, bob, direct, a = pair
    http = login(app, ada)
    big = ramp_png()
    app.config["CHAT_IMAGE_DECODE_SECONDS"] = 0.2  # Python and Pillow take about half of it
    with caplog.at_level(logging.WARNING, logger=decoding.__name__):
        refused = upload(http, direct.id, big, "big.png", "image/png")
    assert (refused.status_code, refused.get_json()) == (
        400, {"ok": False, "error": "invalid_image"})
    assert "took over 0.2 s" in caplog.text
    assert decoding_children() == []  # killed and reaped, not left decoding
    assert count(Attachment) == 0 and stored_files() == []
    app.config["CHAT_IMAGE_DECODE_SECONDS"] = 60
    accepted = upload(http, direct.id, big, "big.png", "image/png")
    assert accepted.status_code == 201, accepted.get_json()
    assert accepted.get_json()["attachment"]["width"] == 8000


def test_a_decode_past_the_memory_limit_is_refused(app, pair):
    ada, bob, direct, a = pair
    http = login(app, ada)
    app.config["CHAT_IMAGE_DECODE_MEMORY_MB"] = 100  # the 8000 x 5000 picture needs 160 more
    refused = upload(http, direct.id, ramp_png(), "big.png", "image/png")
    assert (refused.status_code, refused.get_json()) == (
        400, {"ok": False, "error": "invalid_image"})
    assert count(Attachment) == 0 and stored_files() == []
    # A small picture fits in the same limit.
    assert upload(http, direct.id, png_bytes((400, 300)), "small.png").status_code == 201
    assert decoding_children() == []


def test_a_decoder_that_crashes_is_refused(tmp_path, caplog):
    (tmp_path / "p.png").write_bytes(png_bytes())
    # A type the decoder has no format for: it fails with a traceback, not an answer.
    with caplog.at_level(logging.WARNING, logger=decoding.__name__), pytest.raises(
            BadImage, match="the decoder failed"):
        examine_in_child(str(tmp_path / "p.png"), "image/x-unknown", 32, 10, 1024)
    assert "KeyError" in caplog.text
    assert decoding_children() == []


def test_a_decoders_answer_is_believed_only_when_well_formed():
    good = picture("WEBP", (20, 10))

    def answer(thumbnail: bytes = good, **changes) -> bytes:
        header = {"content_type": "image/png", "width": 20, "height": 10,
                  "thumbnail": len(good)} | changes
        return json.dumps(header).encode() + b"\n" + thumbnail

    info = decoding._read_answer(answer(), "image/png")
    assert (info.content_type, info.width, info.height, info.thumbnail) == (
        "image/png", 20, 10, good)
    with pytest.raises(BadImage, match="too big"):
        decoding._read_answer(b'{"refused": "too big"}\n', "image/png")
    for garbage in [
        b"", b"Traceback (most recent call last):", answer(b""),
        answer(good[:-1]),  # shorter than it says
        answer(b"GIF89a" + good[6:]),  # not a WebP
        answer(content_type="image/gif"),  # not the type asked for
        answer(width=-20), answer(width="20"), answer(height=None), answer(width=True),
        answer(width=8001, height=5000),  # past MAX_PIXELS
        b'["image/png", 20, 10]\n' + good,
    ]:
        with pytest.raises(BadImage, match="garbage"):
            decoding._read_answer(garbage, "image/png")


def test_the_thumbnail_is_turned_as_the_camera_said(app, pair):
    ada, bob, direct, a = pair
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to show
    out = io.BytesIO()
    Image.new("RGB", (1600, 800), "blue").save(out, format="JPEG", exif=exif)
    http = login(app, ada)
    attachment = upload(http, direct.id, out.getvalue(), "p.jpg").get_json()["attachment"]
    assert (attachment["width"], attachment["height"]) == (1600, 800)
    thumb = http.get(attachment["thumbnail_url"])
    assert Image.open(io.BytesIO(thumb.data)).size == (160, 320)


def test_a_full_decoding_pool_answers_unavailable_and_stores_nothing(app, pair):
    ada, bob, direct, a = pair
    http = login(app, ada)  # logging in hashes a password on the same pool
    pool = offload_pool()
    gate = threading.Event()
    holders = [threading.Thread(target=pool.run, args=(gate.wait, 30))
               for _ in range(pool.workers + pool.queue)]
    for holder in holders:
        holder.start()
    try:
        deadline = time.monotonic() + 10
        while pool.admitted < len(holders) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.admitted == len(holders)  # every slot running, every place in line taken
        refused = upload(http, direct.id, png_bytes((200, 200)), "p.png", "image/png")
        assert (refused.status_code, refused.get_json()) == (
            503, {"ok": False, "error": "unavailable"})
        assert refused.headers["Retry-After"] == "5"  # back off, do not retry at once
        assert count(Attachment) == 0 and stored_files() == []
        # A file that is no picture needs no decoding, and is taken.
        assert upload(http, direct.id, b"plain", "a.txt", "text/plain").status_code == 201
    finally:
        gate.set()
        for holder in holders:
            holder.join(10)
    assert upload(http, direct.id, png_bytes((200, 200)), "p.png").status_code == 201


# --------------------------------------------------------------------------- quota


def test_unsent_uploads_past_the_count_are_too_many_until_one_is_sent(app, pair, make_user):
    ada, bob, direct, a = pair
    app.config["CHAT_MAX_UNSENT_UPLOADS"] = 2
    http = login(app, ada)
    first, second = (upload(http, direct.id, f"file {n}".encode(), f"{n}.txt")
                     for n in range(2))
    assert first.status_code == second.status_code == 201
    refused = upload(http, direct.id, b"one more", "3.txt")
    assert (refused.status_code, refused.get_json()) == (429, {
        "ok": False, "error": "too_many", "max_unsent_uploads": 2,
        "max_unsent_upload_bytes": app.config["CHAT_MAX_UNSENT_UPLOAD_BYTES"]})
    assert count(Attachment) == 2 and len(stored_files()) == 2
    # Another user has a quota of their own.
    assert upload(login(app, bob), direct.id, b"bob's", "b.txt").status_code == 201
    # Sending one frees its place.
    sent = send(a, direct.id, "", attachments=[first.get_json()["attachment"]["id"]])
    assert sent["ok"], sent
    assert upload(http, direct.id, b"one more", "3.txt").status_code == 201


def test_unsent_upload_bytes_past_the_quota_are_too_many_and_store_nothing(app, pair):
    ada, bob, direct, a = pair
    app.config["CHAT_MAX_UNSENT_UPLOAD_BYTES"] = 100
    http = login(app, ada)
    assert upload(http, direct.id, b"x" * 60, "a.bin").status_code == 201
    refused = upload(http, direct.id, b"y" * 60, "b.bin")
    assert (refused.status_code, refused.get_json()["error"]) == (429, "too_many")
    assert refused.get_json()["max_unsent_upload_bytes"] == 100
    assert count(Attachment) == 1 and len(stored_files()) == 1
    assert upload(http, direct.id, b"z" * 40, "c.bin").status_code == 201  # exactly 100


def test_the_quota_is_checked_before_the_body_is_read(app, pair):
    ada, bob, direct, a = pair
    app.config["CHAT_MAX_UNSENT_UPLOADS"] = 1
    http = login(app, ada)
    assert upload(http, direct.id, b"x", "a.txt").status_code == 201

    class Unreadable(io.BytesIO):
        def read(self, *args):
            raise AssertionError("the body was read")

        readinto = readline = read1 = read

    response = http.post(f"/api/conversations/{direct.id}/attachments",
                         input_stream=Unreadable(),
                         content_type="multipart/form-data; boundary=x",
                         environ_overrides={"CONTENT_LENGTH": "1000"})
    assert (response.status_code, response.get_json()["error"]) == (429, "too_many")
    assert count(Attachment) == 1


# --------------------------------------------------------------------------- serving


@pytest.mark.parametrize("name, declared, data", [
    ("evil.js", "text/javascript", b"fetch('/api/conversations').then(r => r.text())"),
    ("evil.mjs", "application/javascript", b"export default 1"),
    ("theme.css", "text/css", b"body { background: url(/api/attachments/x) }"),
    ("page.html", "text/html", b"<script>alert(1)</script>"),
    ("data.json", "application/json", b'{"a": 1}'),
])
def test_files_that_are_no_pictures_are_served_as_octet_stream_downloads(app, pair, name,
                                                                         declared, data):
    ada, bob, direct, a = pair
    http = login(app, ada)
    attachment = upload(http, direct.id, data, name, declared).get_json()["attachment"]
    got = http.get(attachment["url"])
    assert got.status_code == 200 and got.data == data
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Disposition"].startswith("attachment")
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in got.headers["Content-Security-Policy"]


def test_a_picture_is_served_inline_only_while_its_bytes_are_one(app, pair):
    ada, bob, direct, a = pair
    http = login(app, ada)
    attachment = upload(http, direct.id, png_bytes(), "p.png", "image/png").get_json()[
        "attachment"]
    shown = http.get(attachment["url"])
    assert shown.mimetype == "image/png"
    assert shown.headers["Content-Disposition"].startswith("inline")
    thumb = http.get(attachment["thumbnail_url"])
    assert thumb.mimetype == "image/webp" and thumb.headers["Content-Disposition"].startswith(
        "inline")
    # The stored bytes are no longer a PNG (a store written by hand, an older row): whatever
    # the row says, the file is a download.
    attachment_store().save(attachment["id"], io.BytesIO(b"<script>alert(1)</script>"))
    got = http.get(attachment["url"])
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Disposition"].startswith("attachment")


def test_an_unsent_upload_withdrawn_by_its_uploader_frees_its_place_and_its_files(app, pair):
    ada, bob, direct, a = pair
    app.config["CHAT_MAX_UNSENT_UPLOADS"] = 1
    http = login(app, ada)
    first = upload(http, direct.id, png_bytes((64, 48)), "a.png", "image/png").get_json()
    assert first["ok"] and len(stored_files()) == 2  # the file and its thumbnail
    assert upload(http, direct.id, b"more", "b.txt").status_code == 429
    url = first["attachment"]["url"]
    # Nobody else may withdraw it, and an unknown or malformed id is not found either.
    for other, path in ((login(app, bob), url), (http, "/api/attachments/" + "0" * 32),
                        (http, "/api/attachments/..%2F..")):
        answer = other.delete(path)
        assert (answer.status_code, answer.get_json()["error"]) == (404, "not_found")
    assert count(Attachment) == 1
    logged_out = app.test_client().delete(url)
    assert (logged_out.status_code, logged_out.get_json()["error"]) == (401, "unauthorized")
    assert count(Attachment) == 1
    app.config["WTF_CSRF_ENABLED"] = True  # a cookie's write needs the X-CSRFToken header
    no_token = http.delete(url)
    assert no_token.status_code == 400 and count(Attachment) == 1
    app.config["WTF_CSRF_ENABLED"] = False
    assert http.delete(url).get_json() == {"ok": True}
    assert count(Attachment) == 0 and stored_files() == []
    assert http.get(url).status_code == 404 and http.delete(url).status_code == 404
    # Its place is free again; a sent upload cannot be withdrawn.
    second = upload(http, direct.id, b"kept", "c.txt").get_json()["attachment"]
    assert send(a, direct.id, "", attachments=[second["id"]])["ok"]
    assert http.delete(second["url"]).status_code == 404 and count(Attachment) == 1


def test_the_decoding_child_runs_below_the_servers_cpu_priority(app, pair):
    """The child yields the cores to the web process: its niceness is the server's plus
    DECODE_NICENESS, read from /proc while it decodes a big picture."""
    import threading

    from simplechat.attachments.images import DECODE_NICENESS

    ada, bob, direct, a = pair
    http = login(app, ada)
    seen: list[int] = []
    done = threading.Event()

    def watch():  # from its start (before it lowers itself) to its end
        while not done.is_set():
            for pid in decoding_children():
                try:
                    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                seen.append(int(fields[16]))  # nice: the 19th field of stat
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(3):  # the child may be quick: a few tries to catch it decoding
            assert upload(http, direct.id, ramp_png(), "big.png", "image/png").status_code == 201
            if max(seen, default=0) > 0:
                break
    finally:
        done.set()
        watcher.join()
    assert seen, "no decoding child was seen"
    assert max(seen) == min(19, os.nice(0) + DECODE_NICENESS)
