"""A Web Push service for the tests, on 127.0.0.1: it plays the browser's push service and the
browser at once. It hands out subscriptions (a P-256 key pair and an auth secret of its own,
as a browser makes them), and for each push it checks the VAPID token (RFC 8292: ES256
signature against the server's public key, ``aud`` = its own origin, ``exp`` ahead, ``sub``)
and decrypts the body (RFC 8291, aes128gcm) with the subscription's private key, so what
arrives is proven, not assumed. An endpoint's name can make it answer 410, fail once, or hang.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Push:
    name: str  # the endpoint's last path segment
    payload: dict  # decrypted
    claims: dict  # the VAPID token's


@dataclass
class _Device:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    failures_left: int = 0


@dataclass
class PushReceiver:
    """Start with ``start()``; ``subscription(name)`` gives the browser's PushSubscription JSON
    for ``http://127.0.0.1:<port>/push/<name>``. Names starting with ``gone`` answer 410, with
    ``flaky`` fail once with 500, with ``hang`` hold the request until ``stop()``."""

    vapid_public_key: str
    pushes: list[Push] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why a request was turned away
    _devices: dict[str, _Device] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> PushReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802  (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver._take(self.path, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # a push service takes many connections at once
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def subscription(self, name: str) -> dict:
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        self._devices[name] = _Device(key, auth, 1 if name.startswith("flaky") else 0)
        public = key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"{self.origin}/push/{name}", "expirationTime": None,
                "keys": {"p256dh": b64url(public), "auth": b64url(auth)}}

    def wait_for(self, count: int, timeout: float = 20.0, name: str | None = None) -> list[Push]:
        """The pushes (to ``name``, or all) once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [p for p in self.pushes if name is None or p.name == name]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} push(es) to {name or 'anyone'}, "
                                         f"{count} expected; refused: {self.refused}")
                self._cond.wait(left)

    def _take(self, path: str, headers: dict, body: bytes) -> int:
        name = path.rsplit("/", 1)[-1]
        device = self._devices.get(name)
        if device is None:
            return 404
        if name.startswith("gone"):
            return 410
        if name.startswith("hang"):
            self._stopping.wait(120)
            return 503
        if device.failures_left:
            device.failures_left -= 1
            return 500
        try:
            claims = self._check_vapid(headers.get("Authorization", ""))
            if headers.get("Content-Encoding") != "aes128gcm":
                raise ValueError("not aes128gcm")
            if not headers.get("TTL", "").isdigit():
                raise ValueError("no TTL")
            plain = http_ece.decrypt(body, private_key=device.private_key,
                                     auth_secret=device.auth, version="aes128gcm")
            payload = json.loads(plain)
        except (ValueError, InvalidSignature, KeyError) as exc:
            with self._cond:
                self.refused.append(f"{name}: {type(exc).__name__}: {exc}")
            return 400
        with self._cond:
            self.pushes.append(Push(name, payload, claims))
            self._cond.notify_all()
        return 201

    def _check_vapid(self, authorization: str) -> dict:
        """RFC 8292: ``vapid t=<JWT>, k=<public key>``; the claims once the token is proven."""
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError(f"not a vapid authorization: {authorization[:20]!r}")
        params = dict(p.strip().split("=", 1) for p in rest.split(","))
        if params["k"] != self.vapid_public_key:
            raise ValueError("the token is signed with another key")
        head, claims_part, signature = params["t"].split(".")
        header = json.loads(unb64url(head))
        if header.get("alg") != "ES256":
            raise ValueError(f"alg {header.get('alg')}")
        raw = unb64url(signature)
        if len(raw) != 64:
            raise ValueError("an ES256 signature is 64 bytes")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                              unb64url(params["k"]))
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                   int.from_bytes(raw[32:], "big"))
        public.verify(der, f"{head}.{claims_part}".encode(), ec.ECDSA(hashes.SHA256()))
        claims = json.loads(unb64url(claims_part))
        if claims.get("aud") != self.origin:
            raise ValueError(f"aud {claims.get('aud')!r} is not {self.origin}")
        if not claims.get("exp") or claims["exp"] < time.time():
            raise ValueError("expired")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise ValueError("no sub")
        return claims


def main() -> None:
    """``python tests/push_receiver.py VAPID_PUBLIC_KEY`` (for benchmarks: a process of its own,
    so its checking and decrypting does not share a GIL with what is measured). Reads a JSON
    list of device names on stdin, prints their subscriptions as one JSON line, then one line
    ``name<TAB>body`` per push it takes (``!`` and the reason per push it refuses)."""
    import sys

    receiver = PushReceiver(sys.argv[1]).start()
    names = json.loads(sys.stdin.readline())
    print(json.dumps({name: receiver.subscription(name) for name in names}), flush=True)
    seen = refused = 0
    while True:
        with receiver._cond:
            receiver._cond.wait(0.05)
            fresh, seen = receiver.pushes[seen:], len(receiver.pushes)
            bad, refused = receiver.refused[refused:], len(receiver.refused)
        lines = [f"{p.name}\t{p.payload.get('body', '')}" for p in fresh]
        lines += [f"!\t{why}" for why in bad]
        if lines:
            print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
