"""The label page's HTTP server: standard library only (http.server), every asset from static/.

On loopback (the default) it answers only requests whose Host is the loopback address, so another web
page cannot reach it through a rebound DNS name; with an explicit --host, every request must carry the
token printed at start (in the URL's ?token= once: the answer sets a SameSite cookie and sends the browser
to the bare address, so the token leaves the address bar and never enters the history).

Whoever reaches the port is a stranger: a request body is at most MAX_BODY bytes and a JSON object, a
connection that sends nothing for TIMEOUT_S is closed, at most MAX_CONNECTIONS are served at once (more get
503), and a bad request gets one 4xx answer while the server goes on serving.
"""

from __future__ import annotations

import errno
import hmac
import json
import mimetypes
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

from engines.errors import UserError
from train.label.store import Crop, LabelStore

STATIC = Path(__file__).parent / "static"
MAX_BODY = 65536  # bytes of a POST body (a label is a few dozen)
TIMEOUT_S = 10.0  # a connection idle this long (a half-sent request) is closed
MAX_CONNECTIONS = 32  # served at once; one more is answered 503 at once
REFUSING = 32  # refusals lingering at once (LabelServer._refuse); more are closed right after their 503
REFUSE_LINGER_S = 1.0  # a refused connection's request is read this long at most before it is closed
TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
COOKIE = "label_token"
PLACEHOLDER = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="96" height="128"><rect width="96" height="128" '
    b'fill="#444"/><text x="48" y="68" font-size="12" fill="#ddd" text-anchor="middle">unreadable</text>'
    b"</svg>"
)


@dataclass
class LabelApp:
    """What the handler serves: the folder, its crops and labels, the token (None on loopback)."""

    folder: Path
    crops: list[Crop]
    store: LabelStore
    unsure_below: float
    token: str | None = None
    lock: IO[bytes] | None = None  # the folder's lock (store.lock_folder), held while the app lives

    def close(self) -> None:
        """Let another label server have the folder."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def items(self) -> list[dict[str, Any]]:
        out = []
        for c in self.crops:
            top = c.top_mask_probability()
            r = c.record
            unsure = (top < self.unsure_below) if top is not None else bool(r and r.reason == "uncertain")
            rec = {
                k: getattr(r, k)
                for k in ("source", "time", "track", "reason")
                if r and getattr(r, k) is not None
            }
            out.append(
                {
                    "file": c.file,
                    "guess": c.guess(),
                    "top": top,
                    "unsure": bool(unsure),
                    "readable": c.readable,
                    **rec,
                    **self.store.state(c.file),
                }
            )
        return out


class Handler(BaseHTTPRequestHandler):
    server_version = "mask-train-label"
    app: LabelApp  # set on the subclass made per server
    timeout = TIMEOUT_S  # socketserver sets it on the connection: a half-sent request does not hold a thread

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # one line per key press would bury the start message

    # --- checks -----------------------------------------------------------------------------------------
    def _allowed(self, query: dict[str, list[str]]) -> bool:
        token = self.app.token
        if token is None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            return host in LOOPBACK
        given = (query.get("token") or [""])[0]
        if not given:
            jar = SimpleCookie(self.headers.get("Cookie") or "")
            given = jar[COOKIE].value if COOKIE in jar else ""
        return hmac.compare_digest(given.encode(), token.encode())

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    # --- routes -----------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._allowed(query):
            return self._send(403, b"forbidden: give the token printed at start (?token=...)\n", "text/plain")
        path = unquote(url.path)
        if path == "/":
            if (
                self.app.token and "token" in query
            ):  # the printed address: keep the token, drop it from the URL
                cookie = f"{COOKIE}={self.app.token}; HttpOnly; SameSite=Strict; Path=/"
                return self._send(303, b"", "text/plain", {"Set-Cookie": cookie, "Location": "/"})
            return self._send(200, (STATIC / "index.html").read_bytes(), "text/html; charset=utf-8")
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"))
        if path == "/api/items":
            return self._json(
                {
                    "folder": str(self.app.folder),
                    "unsure_below": self.app.unsure_below,
                    "items": self.app.items(),
                }
            )
        if path.startswith("/crop/"):
            return self._crop(path.removeprefix("/crop/"))
        self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if not self._allowed(parse_qs(url.query)):
            return self._send(403, b"forbidden\n", "text/plain")
        # a JSON body forces a CORS preflight on any other origin's page, which this server never answers
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self._send(415, b"send application/json\n", "text/plain")
        length = (self.headers.get("Content-Length") or "").strip()
        if not length.isdigit():  # absent, negative ("-1" read to the end of the stream) or not a number
            self.close_connection = True
            return self._json({"error": f"Content-Length {length[:20]!r} is not a byte count"}, 411)
        if int(length) > MAX_BODY:
            self.close_connection = True  # the body stays unread
            return self._json({"error": f"a body of {length} bytes (at most {MAX_BODY})"}, 413)
        try:
            body = json.loads(self.rfile.read(int(length)) or b"{}")
        except (ValueError, RecursionError):
            return self._json({"error": "bad JSON"}, 400)
        if not isinstance(body, dict):
            return self._json({"error": "send a JSON object"}, 400)
        if url.path == "/api/label":
            return self._label(body)
        if url.path == "/api/undo":
            file = self.app.store.undo()
            return self._json({"file": file, **(self.app.store.state(file) if file else {})})
        self._send(404, b"not found\n", "text/plain")

    def _label(self, body: dict[str, Any]) -> None:
        file = body.get("file")
        if not isinstance(file, str) or file not in {c.file for c in self.app.crops}:
            return self._json({"error": f"no crop {file!r}"}, 404)
        key, value = body.get("key"), body.get("value") or ""
        if not (isinstance(key, str) and isinstance(value, str)):
            return self._json({"error": "key and value must be text"}, 400)
        try:
            state = self.app.store.set(file, key, value)
        except ValueError as exc:
            return self._json({"error": str(exc)}, 400)
        except OSError as exc:  # a full disk: the old labels.csv stays whole (atomic write)
            return self._json({"error": f"could not save {self.app.folder}/labels.csv: {exc}"}, 507)
        self._json({"file": file, **state})

    def _static(self, name: str) -> None:
        target = STATIC / name
        if "/" in name or name.startswith(".") or not target.is_file():
            return self._send(404, b"not found\n", "text/plain")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(200, target.read_bytes(), ctype)

    def _crop(self, name: str) -> None:
        crop = next((c for c in self.app.crops if c.file == name), None)
        if crop is None:
            return self._send(404, b"not found\n", "text/plain")
        if not crop.readable:
            return self._send(200, PLACEHOLDER, "image/svg+xml")
        try:  # a crop replaced by a link after the start is refused, not followed
            fd = os.open(self.app.folder / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return self._send(404, b"not found\n", "text/plain")
        with os.fdopen(fd, "rb") as fh:
            data = fh.read()
        self._send(200, data, mimetypes.guess_type(name)[0] or "application/octet-stream")


class LabelServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS at once; an error in one is one line, not a
    traceback, and never stops the others."""

    daemon_threads = True
    max_connections = MAX_CONNECTIONS

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._refusing = threading.BoundedSemaphore(REFUSING)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            if self._refusing.acquire(blocking=False):  # answered and closed beside the accepting thread
                try:
                    threading.Thread(target=self._refuse, args=(request,), daemon=True).start()
                    return
                except RuntimeError:  # no thread to be had: as a flood
                    self._refusing.release()
            try:  # a flood: answered and closed at once, as it comes
                request.sendall(TOO_MANY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def _refuse(self, request) -> None:
        """503, then a lingering close: the request's unread bytes are read (for at most REFUSE_LINGER_S)
        before the socket is closed. Closed with them unread, the kernel ends the connection with a reset,
        and a reset that reaches the client first discards the answer (it saw "connection reset" or, at its
        own shutdown, "not connected", instead of the 503)."""
        try:
            request.sendall(TOO_MANY)
            request.shutdown(socket.SHUT_WR)
            end = time.monotonic() + REFUSE_LINGER_S
            while (left := end - time.monotonic()) > 0:
                request.settimeout(left)
                if not request.recv(65536):
                    break
        except OSError:
            pass
        finally:
            request.close()
            self._refusing.release()

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        print(f"mask-train label: a request from {client_address[0]} failed: {exc!r}"[:300], file=sys.stderr)


def make_server(
    app: LabelApp,
    host: str,
    port: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
    timeout_s: float = TIMEOUT_S,
) -> ThreadingHTTPServer:
    """Bind now (port 0: any free port); a port in use is one clear line."""
    handler = type("LabelHandler", (Handler,), {"app": app, "timeout": timeout_s})
    try:
        server = type("Server", (LabelServer,), {"max_connections": max_connections})((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is already in use (another label server?); pass --port N"
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.daemon_threads = True
    return server


def new_token() -> str:
    return secrets.token_urlsafe(18)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """For tests: serve until server.shutdown()."""
    thread = threading.Thread(target=server.serve_forever, name="label-server", daemon=True)
    thread.start()
    return thread
