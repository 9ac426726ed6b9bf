"""Issue 27 on real gunicorn-eventlet: a big honest picture is decoded in a child process,
waited for on the offload pool's threads, so a bystander's /healthz is answered while it
decodes and the worker never holds its pixels, and a JPEG repeating a scan thousands of times is
refused without holding the worker."""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

pytestmark = pytest.mark.e2e


def big_png() -> bytes:
    """8000 x 5000 (40 million pixels, the limit), about 130 KB: cheap to send, 120 MB to
    decode."""
    ramp = Image.linear_gradient("L").resize((8000, 5000))
    picture = Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                  ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    out = io.BytesIO()
    picture.save(out, format="PNG", compress_level=9)
    return out.getvalue()


def memory_kib(pid: int) -> dict[str, int]:
    """A process's resident memory now (VmRSS) and at its highest (VmHWM), in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines())
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def csrf_header(session: requests.Session, url: str) -> dict[str, str]:
    page = session.get(url + "/chat/", timeout=10).text
    return {"X-CSRFToken": re.search(r'<meta name="csrf-token" content="([^"]+)"', page)[1]}


def test_a_bystander_is_answered_while_a_big_picture_decodes(stack):
    web = stack.start_web(workers=1)
    ada, bob = stack.register(web), stack.register(web)
    conversation_id = ada.start_conversation(web, [bob.id])
    url = f"{web.url}/api/conversations/{conversation_id}/attachments"
    headers = csrf_header(ada.session, web.url)
    png = big_png()
    (worker,) = web.worker_pids()

    answered: list[tuple[float, float]] = []  # (sent, answered) of each /healthz
    stop = threading.Event()

    def bystander() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                sent = time.monotonic()
                assert session.get(web.url + "/healthz", timeout=120).status_code == 200
                answered.append((sent, time.monotonic()))
                time.sleep(0.01)

    poller = threading.Thread(target=bystander, daemon=True)
    poller.start()
    try:
        before = memory_kib(worker)
        began = time.monotonic()
        response = ada.session.post(url, files={"file": ("big.png", png, "image/png")},
                                    headers=headers, timeout=120)
        ended = time.monotonic()
        after = memory_kib(worker)
    finally:
        stop.set()
        poller.join(130)
    assert response.status_code == 201, response.text
    attachment = response.json()["attachment"]
    assert (attachment["width"], attachment["height"]) == (8000, 5000)
    # Served whole (gunicorn's sendfile starts where the descriptor stands).
    assert ada.session.get(web.url + attachment["url"], timeout=10).content == png
    thumb = ada.session.get(web.url + attachment["thumbnail_url"], timeout=10)
    assert Image.open(io.BytesIO(thumb.content)).size == (320, 200)
    # The decoding ran in another process: the worker's peak never took the 160 MB of
    # pixels...
    assert after["VmHWM"] - before["VmRSS"] < 64 * 1024, (before, after)
    # ...so /healthz asked after the upload began was answered before it ended, again and
    # again (with the decoding on the loop, at most the one or two that slip in while the
    # upload waits on SQL or Redis before or after it).
    during = [a for a in answered if a[0] > began and a[1] < ended]
    assert len(during) >= 5, (len(during), ended - began)
    assert web.alive() and web.worker_pids() == [worker]


def test_a_scan_bomb_is_refused_and_the_worker_lives(stack):
    from tests.test_hostile_uploads import scan_bomb

    web = stack.start_web(workers=1)
    ada, bob = stack.register(web), stack.register(web)
    conversation_id = ada.start_conversation(web, [bob.id])
    (worker,) = web.worker_pids()
    bomb = scan_bomb(20_000, (2048, 2048))
    response = ada.session.post(
        f"{web.url}/api/conversations/{conversation_id}/attachments",
        files={"file": ("bomb.jpg", bomb, "image/jpeg")},
        headers=csrf_header(ada.session, web.url), timeout=120)
    assert (response.status_code, response.json()) == (
        400, {"ok": False, "error": "invalid_image"})
    assert requests.get(web.url + "/healthz", timeout=10).status_code == 200
    assert web.worker_pids() == [worker] and "WORKER TIMEOUT" not in web.log()
    assert stack.database.scalar("SELECT count(*) FROM attachments") == 0
