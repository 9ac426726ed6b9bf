"""A hostile webhook receiver on 127.0.0.1: it takes each connection, reads what the sender
sends, then answers one byte every ``interval`` seconds of a status line and header that never
end (or of another ``answer``, such as a TLS record header announcing a long record, followed by
bytes for ever). It counts the connections, and tells which ones the sender has given up on.

Used by the webhook tests and benchmarks/slow_webhook.py."""

from __future__ import annotations

import select
import socket
import threading

HTTP_ANSWER = b"HTTP/1.1 200 OK\r\nX-Slow: "
TLS_ANSWER = b"\x16\x03\x03\x40\x00"  # a handshake record of 16 KiB, to come


class TrickleReceiver:
    def __init__(self, interval: float = 2.0, path: str = "/hook", scheme: str = "http",
                 answer: bytes = HTTP_ANSWER):
        self.interval = interval
        self.answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}{path}"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self.connections = 0  # accepted
        self.given_up = 0  # closed by the sender while the answer was still trickling
        self.requests: list[bytes] = []  # what each connection sent before the trickle began
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def open(self) -> int:
        """Connections accepted and not (yet) given up by the sender."""
        with self._lock:
            return self.connections - self.given_up

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        received = self._read_request(conn)
        with self._lock:
            self.requests.append(received)
        sent = 0
        try:
            while not self._stop.is_set():
                conn.sendall(self.answer[sent:sent + 1] if sent < len(self.answer) else b"a")
                sent += 1
                readable, _, _ = select.select([conn], [], [], self.interval)
                if readable and not conn.recv(4096):
                    raise ConnectionResetError("closed by the sender")
        except OSError:
            if not self._stop.is_set():
                with self._lock:
                    self.given_up += 1
        finally:
            conn.close()

    def _read_request(self, conn: socket.socket) -> bytes:
        """Whatever arrives within a second, up to the end of the headers and the body."""
        data = b""
        while True:
            readable, _, _ = select.select([conn], [], [], 1.0)
            if not readable:
                return data
            try:
                chunk = conn.recv(65536)
            except OSError:
                return data
            if not chunk:
                return data
            data += chunk
            head, found, body = data.partition(b"\r\n\r\n")
            if found:
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if len(body) >= length:
                    return data

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
