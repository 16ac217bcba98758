"""Real webhook receivers on 127.0.0.1 for the alert tests: scripted HTTP answers, a port that
refuses connections, and a server that accepts and never answers."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator


class ScriptedReceiver:
    """Answers POSTs with the scripted statuses in turn (the last one repeats) and keeps every body."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.received: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(json.loads(body))
                index = min(len(receiver.received), len(receiver.statuses)) - 1
                self.send_response(receiver.statuses[index])
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"

    def __enter__(self) -> "ScriptedReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def refusing_url() -> Iterator[str]:
    """A URL whose port is bound but not listening: every connect is refused, and no other
    process can take the port while the test runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/alerts"
    finally:
        sock.close()


@contextlib.contextmanager
def hanging_url() -> Iterator[tuple[str, list]]:
    """Accepts connections and never answers; yields the URL and the list of accepted connections."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever():
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/alerts", accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()
