"""The label page's HTTP server: standard library only (http.server), every asset from static/.

On loopback (the default) it answers only requests whose Host is the loopback address, so another web
page cannot reach it through a rebound DNS name; with an explicit --host, every request must carry the
token printed at start (in the URL's ?token= once; the page then keeps it in a SameSite cookie).
"""

from __future__ import annotations

import errno
import hmac
import json
import mimetypes
import secrets
import threading
from dataclasses import dataclass
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from engines.errors import UserError
from train.label.store import Crop, LabelStore

STATIC = Path(__file__).parent / "static"
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

    def items(self) -> list[dict[str, Any]]:
        out = []
        for c in self.crops:
            top = c.top_mask_probability()
            unsure = (top < self.unsure_below) if top is not None else c.record.get("reason") == "uncertain"
            rec = {k: c.record.get(k) for k in ("source", "time", "track", "reason") if k in c.record}
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
            extra = {}
            if self.app.token:
                extra["Set-Cookie"] = f"{COOKIE}={self.app.token}; HttpOnly; SameSite=Strict; Path=/"
            return self._send(200, (STATIC / "index.html").read_bytes(), "text/html; charset=utf-8", extra)
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
        try:
            body = json.loads(
                self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 65536)) or b"{}"
            )
        except (ValueError, json.JSONDecodeError):
            return self._json({"error": "bad JSON"}, 400)
        if url.path == "/api/label":
            return self._label(body)
        if url.path == "/api/undo":
            file = self.app.store.undo()
            return self._json({"file": file, **(self.app.store.state(file) if file else {})})
        self._send(404, b"not found\n", "text/plain")

    def _label(self, body: dict[str, Any]) -> None:
        file = body.get("file")
        if file not in {c.file for c in self.app.crops}:
            return self._json({"error": f"no crop {file!r}"}, 404)
        try:
            state = self.app.store.set(file, str(body.get("key")), str(body.get("value") or ""))
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
        data = (self.app.folder / name).read_bytes()
        self._send(200, data, mimetypes.guess_type(name)[0] or "application/octet-stream")


def make_server(app: LabelApp, host: str, port: int) -> ThreadingHTTPServer:
    """Bind now (port 0: any free port); a port in use is one clear line."""
    handler = type("LabelHandler", (Handler,), {"app": app})
    try:
        server = ThreadingHTTPServer((host, port), handler)
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
