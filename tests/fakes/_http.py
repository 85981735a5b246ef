"""Shared plumbing for the provider fakes: a threaded stdlib HTTP server that
records every request, optional TLS, and small helpers both fakes need.

Nothing here knows about Replicate or fal; the fakes subclass `FakeHTTPServer`
and implement `handle(req) -> Response`.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import ssl
import string
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

CERT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "certs")
# Trust anchor for clients (SSL_CERT_FILE); the server presents server.pem, issued by it.
CA_CERT_FILE = os.path.join(CERT_DIR, "ca.pem")
_SERVER_CERT = os.path.join(CERT_DIR, "server.pem")
_SERVER_KEY = os.path.join(CERT_DIR, "server.key")


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # exactly as received; nothing is redacted
    body: bytes
    json: Any = None
    time: float = field(default_factory=time.time)

    @property
    def params(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.query).items()}

    def header(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for k, v in self.headers.items():
            if k.lower() == lname:
                return v
        return default


@dataclass
class Response:
    status: int = 200
    body: bytes | Any = b""  # bytes are sent raw; anything else is JSON-encoded
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class DropConnection(Exception):
    """Raised by a handler to close the socket without answering, after any
    server-side effects already happened (the "request was accepted but the
    client never heard back" failure)."""


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status=status, body=obj, headers=dict(headers or {}))


def intercept(fake: Any, monkeypatch: Any, method: str, prefix: str, status: int, detail: str = "unavailable",
              times: int | None = None) -> list[str]:
    """Answer the fake's `method` requests under `prefix` with an error (the first `times` of them, or all).

    Returns the paths it answered, so a test can count them. Undone by monkeypatch at the end of the test.
    """
    real_handle, hit = fake.handle, []

    def handle(req: Any) -> Response:
        if req.method == method and req.path.startswith(prefix) and (times is None or len(hit) < times):
            hit.append(req.path)
            return json_response({"detail": detail}, status)
        return real_handle(req)

    monkeypatch.setattr(fake, "handle", handle)
    return hit


def random_id(n: int = 26) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, str, bytes]]:
    """Return {field: (filename, content_type, bytes)}. The `cgi` module is gone
    in 3.13, and the email parser handles multipart/form-data well enough."""
    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    out: dict[str, tuple[str | None, str, bytes]] = {}
    if not msg.is_multipart():
        return out
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True) or b""
        out[str(name)] = (part.get_filename(), part.get_content_type(), payload)
    return out


def per_key(value: Any, key: str, default: Any = None) -> Any:
    """Knobs may be a plain value or a dict keyed by model/endpoint id ("*" = any)."""
    if isinstance(value, dict):
        if key in value:
            return value[key]
        return value.get("*", default)
    return value


def pop_knob(holder: Any, attr: str, key: str) -> Any:
    """Pop the next item from a list knob (or from its per-key list)."""
    value = getattr(holder, attr)
    if isinstance(value, dict):
        for k in (key, "*"):
            items = value.get(k)
            if items:
                return items.pop(0)
        return None
    if value:
        return value.pop(0)
    return None


def take_count(holder: Any, attr: str) -> bool:
    """Consume one unit of a countdown knob; True (bool) counts as 1."""
    value = getattr(holder, attr)
    n = int(value) if not isinstance(value, bool) else (1 if value else 0)
    if n <= 0:
        return False
    setattr(holder, attr, n - 1)
    return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FakeHTTPServer:
    """Base class: starts on 127.0.0.1:<free port> in a daemon thread.

    Subclasses implement `handle(req: RecordedRequest) -> Response`.
    """

    server_name = "fake"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tls: bool = False) -> None:
        self.host = host
        self.tls = tls
        self._port = port
        self.requests: list[RecordedRequest] = []
        self.lock = threading.RLock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------
    def start(self) -> "FakeHTTPServer":
        handler = _make_handler(self)
        httpd = _Server((self.host, self._port), handler)
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(_SERVER_CERT, _SERVER_KEY)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"{self.server_name}-{self._port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self._port}"

    @property
    def ca_cert_file(self) -> str:
        return CA_CERT_FILE

    # -- helpers for tests ---------------------------------------------
    def requests_to(self, method: str | None = None, prefix: str = "") -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and r.path.startswith(prefix)]

    def handle(self, req: RecordedRequest) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                handler.rfile.readline()
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _make_handler(fake: FakeHTTPServer) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs; httpx pools connections

        def log_message(self, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes; without this, delayed ACKs hold each reply ~40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _serve(self) -> None:
            body = _read_body(self)
            parts = urlsplit(self.path)
            parsed = None
            if body and "json" in (self.headers.get("Content-Type") or ""):
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
            req = RecordedRequest(
                method=self.command, path=parts.path, query=parts.query,
                headers={k: v for k, v in self.headers.items()}, body=body, json=parsed,
            )
            with fake.lock:
                fake.requests.append(req)
            try:
                resp = fake.handle(req)
            except DropConnection:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            except Exception as exc:  # a bug in the fake should look like a 500, not a hang
                resp = json_response({"detail": f"fake server error: {exc!r}"}, 500)
            self._write(resp)

        def _write(self, resp: Response) -> None:
            if isinstance(resp.body, (bytes, bytearray)):
                payload = bytes(resp.body)
                ctype = resp.content_type
            else:
                payload = json.dumps(resp.body).encode()
                ctype = "application/json"
            self.send_response(resp.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    return Handler


class CreateLimit:
    """An account's create limit: at most `creates` per sliding `window_s` (Replicate: 600 predictions a minute,
    far less for a new account without credit; fal: per-key concurrency and request limits). A create over the
    limit is answered 429 with `Retry-After` (and, on Replicate, "resets in ~Ns") and is not counted or billed."""

    def __init__(self, creates: int, window_s: float = 60.0):
        self.creates, self.window_s = creates, window_s
        self.accepted: list[float] = []
        self.refused = 0
        self._lock = threading.Lock()

    def retry_after(self) -> int | None:
        """None when this create may go (it is counted), else the whole seconds until the window has room."""
        with self._lock:
            now = time.monotonic()
            recent = [t for t in self.accepted if now - t < self.window_s]
            if len(recent) < self.creates:
                self.accepted.append(now)
                return None
            self.refused += 1
            return max(1, math.ceil(recent[-self.creates] + self.window_s - now))
