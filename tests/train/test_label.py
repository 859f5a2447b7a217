"""`mask-train label` over HTTP (the browser tests are in test_label_browser.py): loopback by default,
the token with --host, and bad input (a corrupt crop, a hand-edited labels.csv, a port in use)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from engines.errors import UserError
from tests.conftest import REPO
from tests.train.collectdir import make_collect_dir
from train.commands.label import build_app
from train.config import Config
from train.label import store as store_module
from train.label.server import make_server, serve_in_thread


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def get_no_redirect(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", f"{u.path}?{u.query}" if u.query else u.path, headers=headers or {})
        r = conn.getresponse()
        r.read()
        return r.status, dict(r.getheaders())
    finally:
        conn.close()


def post(
    url: str, body: dict, ctype: str = "application/json", headers: dict | None = None
) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": ctype, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode()}


@pytest.fixture
def served(tmp_path, shared):
    """Start a label server in this process: (base URL, folder, app) for a folder of 5 crops."""
    servers = []

    def start(folder: Path | None = None, exposed: bool = False, n: int = 5):
        if folder is None:
            folder = tmp_path / "collect"
            make_collect_dir(folder, n=n)
        app, warnings = build_app(folder, Config(), exposed=exposed)
        server = make_server(app, "127.0.0.1", 0)
        serve_in_thread(server)
        servers.append((server, app))
        return f"http://127.0.0.1:{server.server_address[1]}", folder, app, warnings

    yield start
    for s, app in servers:
        s.shutdown()
        s.server_close()
        app.close()


class LabelProcess:
    """`python -m train label ...` as a user runs it; the start line read from its stdout."""

    def __init__(self, *args: str, sigint_ignored: bool = False) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "train", "label", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # as a shell script's `&` starts it: SIGINT ignored, inherited through exec
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
        )

    def start_line(self, timeout: float = 60) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "no start line"
        return self.proc.stdout.readline()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=30)
        return err


def run_label(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "train", "label", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_loopback_by_default_and_other_host_names_refused(tmp_path, shared):
    folder = tmp_path / "collect"
    make_collect_dir(folder, n=3)
    p = LabelProcess(str(folder), "--port", "0")
    try:
        line = p.start_line()
        assert "labelling 3 crops" in line and "http://127.0.0.1:" in line and "token" not in line
        url = line.split("open ")[1].split()[0]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        status, body, _ = get(url + "api/items")
        assert status == 200 and len(json.loads(body)["items"]) == 3
        # a page on another site reaching 127.0.0.1 through its own DNS name is refused
        assert get(url + "api/items", {"Host": f"evil.example:{port}"})[0] == 403
        # not listening on the machine's other addresses
        try:
            other = socket.gethostbyname(socket.gethostname())
        except OSError:
            other = "127.0.0.1"
        if not other.startswith("127."):
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=2).close()
    finally:
        p.stop()


def test_a_server_started_with_sigint_ignored_still_stops_on_sigint(tmp_path, shared):
    folder = tmp_path / "collect"
    make_collect_dir(folder, n=2)
    p = LabelProcess(str(folder), "--port", "0", sigint_ignored=True)
    assert "labelling 2 crops" in p.start_line()
    p.stop()  # raises TimeoutExpired if the SIGINT is ignored
    assert p.proc.returncode == 0


def test_explicit_host_requires_the_printed_token(tmp_path, shared):
    folder = tmp_path / "collect"
    make_collect_dir(folder, n=3)
    p = LabelProcess(str(folder), "--port", "0", "--host", "127.0.0.1")
    try:
        line = p.start_line()
        url = line.split("open ")[1].split()[0]
        base, token = url.split("?token=")
        assert len(token) >= 20
        assert get(base)[0] == 403
        assert get(base + "api/items")[0] == 403
        assert get(base + "api/items?token=wrong")[0] == 403
        assert post(base + "api/label", {"file": "000000.jpg", "key": "mask", "value": "wear"})[0] == 403
        assert not (folder / "labels.csv").exists()
        # the printed address: a cookie, and the browser sent on to the bare address (the token leaves the
        # address bar and the history)
        status, headers = get_no_redirect(url)
        assert status == 303 and headers["Location"] == "/"
        assert f"label_token={token}" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
        cookie = {"Cookie": f"label_token={token}"}
        status, page, _ = get(base, cookie)
        assert status == 200 and b"<html" in page.lower()
        assert get(base + "api/items", cookie)[0] == 200
        assert get(base + "static/app.js", cookie)[0] == 200
        assert (
            post(base + "api/label", {"file": "000000.jpg", "key": "mask", "value": "wear"}, headers=cookie)[
                0
            ]
            == 200
        )
        assert (folder / "labels.csv").read_text() == "file,mask,gender,age\n000000.jpg,wear,,\n"
    finally:
        p.stop()


def test_every_asset_is_served_from_the_package(served):
    base, *_ = served()
    status, html, _ = get(base + "/")
    assert status == 200
    text = html.decode()
    assert "http://" not in text and "https://" not in text  # no CDN
    for asset in ("/static/app.js", "/static/app.css"):
        assert asset in text
        status, body, headers = get(base + asset)
        assert status == 200 and body and "http" not in body.decode().replace("http://www.w3.org", "")
    assert get(base + "/static/../store.py")[0] == 404
    assert get(base + "/crop/..%2Fetc%2Fpasswd")[0] == 404


def test_labels_discard_undo_and_bad_requests(served):
    base, folder, app, _ = served()
    assert post(base + "/api/label", {"file": "000001.jpg", "key": "mask", "value": "incorrect"})[0] == 200
    assert post(base + "/api/label", {"file": "000001.jpg", "key": "age", "value": ">=60"})[0] == 200
    assert post(base + "/api/label", {"file": "000003.jpg", "key": "discard"})[0] == 200
    assert (folder / "labels.csv").read_text() == "file,mask,gender,age\n000001.jpg,incorrect,,>=60\n"
    assert (folder / "discarded.csv").read_text() == "file\n000003.jpg\n"
    status, undone = post(base + "/api/undo", {})
    assert status == 200 and undone["file"] == "000003.jpg" and not undone["discarded"]
    assert (folder / "discarded.csv").read_text() == "file\n"
    status, undone = post(base + "/api/undo", {})
    assert undone == {"file": "000001.jpg", "mask": "incorrect", "gender": "", "age": "", "discarded": False}
    assert (folder / "labels.csv").read_text() == "file,mask,gender,age\n000001.jpg,incorrect,,\n"
    assert post(base + "/api/label", {"file": "000001.jpg", "key": "mask", "value": "maybe"})[0] == 400
    assert post(base + "/api/label", {"file": "nope.jpg", "key": "mask", "value": "wear"})[0] == 404
    assert (
        post(base + "/api/label", {"file": "000001.jpg", "key": "mask", "value": "wear"}, "text/plain")[0]
        == 415
    )
    assert (folder / "labels.csv").read_text() == "file,mask,gender,age\n000001.jpg,incorrect,,\n"


def test_a_failed_save_keeps_the_old_labels(served, monkeypatch):
    base, folder, *_ = served()
    post(base + "/api/label", {"file": "000000.jpg", "key": "mask", "value": "wear"})
    before = (folder / "labels.csv").read_text()

    def full_disk(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "atomic_write_text", full_disk)
    status, body = post(base + "/api/label", {"file": "000001.jpg", "key": "mask", "value": "wear"})
    assert status == 507 and "No space left" in body["error"] and "labels.csv" in body["error"]
    assert (folder / "labels.csv").read_text() == before


def test_model_guess_unsure_filter_and_a_plain_image_folder(served, tmp_path):
    base, *_ = served()
    items = json.loads(get(base + "/api/items")[1])["items"]
    assert [i["guess"] for i in items] == ["wear", "wear", "not_wear", "incorrect", "not_wear"]
    assert [i["file"] for i in items if i["unsure"]] == ["000001.jpg", "000003.jpg"]
    plain = tmp_path / "plain"
    make_collect_dir(plain, n=2, jsonl=False)
    base, *_ = served(plain)
    items = json.loads(get(base + "/api/items")[1])["items"]
    assert [(i["file"], i["guess"], i["unsure"]) for i in items] == [
        ("000000.jpg", "", False),
        ("000001.jpg", "", False),
    ]


def test_a_corrupt_crop_is_one_line_and_a_placeholder(served, tmp_path):
    folder = tmp_path / "collect"
    make_collect_dir(folder, n=3)
    (folder / "000001.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    base, _, app, warnings = served(folder)
    assert warnings == [f"{folder / '000001.jpg'}: not a readable image; shown as a placeholder"]
    status, body, headers = get(base + "/crop/000001.jpg")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml" and b"unreadable" in body
    assert get(base + "/crop/000000.jpg")[2]["Content-Type"] == "image/jpeg"
    app.close()  # one server per folder: the process below needs it free
    p = LabelProcess(str(folder), "--port", "0")
    try:
        assert "labelling 3 crops" in p.start_line()
    finally:
        err = p.stop()
    assert err.count("000001.jpg") == 1 and "not a readable image" in err and "Traceback" not in err


def test_a_hand_edited_labels_csv_with_an_unknown_state_is_one_line(tmp_path, shared):
    folder = tmp_path / "collect"
    make_collect_dir(folder, n=3)
    original = "file,mask,gender,age\n000000.jpg,wear,,\n000001.jpg,half-on,male,\n"
    (folder / "labels.csv").write_text(original)
    r = run_label(str(folder), "--port", "0")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(folder / "labels.csv") in lines[0] and "line 3" in lines[0]
    assert "'half-on'" in lines[0] and "000001.jpg" in lines[0] and "not_wear" in lines[0]
    assert (folder / "labels.csv").read_text() == original  # nothing lost
    with pytest.raises(UserError, match="no 'file' column"):
        (folder / "labels.csv").write_text("name,mask\n")
        build_app(folder, Config(), exposed=False)


def test_a_second_server_on_the_same_port_is_one_line(tmp_path, shared):
    folder = tmp_path / "collect"
    make_collect_dir(folder, n=2)
    first = LabelProcess(str(folder), "--port", "0")
    try:
        url = first.start_line().split("open ")[1].split()[0]
        port = url.rsplit(":", 1)[1].strip("/")
        other = tmp_path / "other"  # another folder (the same one is refused by its lock first)
        make_collect_dir(other, n=2)
        r = run_label(str(other), "--port", port)
        assert r.returncode == 2
        assert r.stderr.strip() == (
            f"mask-train: error: port {port} on 127.0.0.1 is already in use (another label server?); "
            "pass --port N"
        )
        assert get(url + "api/items")[0] == 200  # the first one still serves
    finally:
        first.stop()


def test_an_empty_folder_is_one_line(tmp_path):
    r = run_label(str(tmp_path))
    assert (
        r.returncode == 2
        and r.stderr.strip() == f"mask-train: error: {tmp_path}: no images (.jpg, .png, ...) to label"
    )
