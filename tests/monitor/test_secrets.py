"""Secrets never printed: a monitor run with passwords in a stream URL, in the environment and in the MQTT
URL shows none of them (stdout, stderr, events, recordings' names, every MQTT topic and payload), while the
real password still reaches the stream's server; MQTT over TLS (mqtts:// with --mqtt-ca) and a login the
broker refuses (one line with its reason, not "unreachable"), against a real amqtt broker with passwords."""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from engines.errors import UserError
from engines.secrets import MQTT_PASSWORD_ENV, STREAM_PASSWORD_ENV
from monitor.broker import broker_from_args
from monitor.cli import main
from monitor.outputs.mqtt import MqttPublisher
from monitor.site.feed import SiteFeed
from tests.conftest import REPO
from tests.monitor.test_mqtt import BrokerThread, _event, _free_port, _wait

pytest.importorskip("amqtt")

USER, MQ_PASSWORD = "user", "s3cretMQ"


def _password_file(tmp_path) -> str:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    path = tmp_path / "broker-passwd"
    path.write_text(f"{USER}:{PasswordHash((Argon2Hasher(),)).hash(MQ_PASSWORD)}\n")
    return str(path)


def _auth(tmp_path) -> dict:
    return {"amqtt.plugins.authentication.FileAuthPlugin": {"password_file": _password_file(tmp_path)}}


@pytest.fixture()
def auth_broker(tmp_path):
    """A broker that takes only user / s3cretMQ."""
    b = BrokerThread(_free_port(), plugins=_auth(tmp_path))
    b.start()
    yield b
    b.stop()
    b.close()


def _cert(tmp_path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (its own CA), made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS broker")
    cert, key = tmp_path / "broker.pem", tmp_path / "broker.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


class Recorder:
    """A client with the right password that keeps every topic and payload under `#`."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.username_pw_set(USER, MQ_PASSWORD)
        self.client.on_connect = lambda c, *a: c.subscribe("#", 1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class AuthServer:
    """An HTTP server on 127.0.0.1 that asks for a password (Basic) and keeps every Authorization it gets."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                auth = self.headers.get("Authorization")
                if auth:
                    seen.append(auth)
                    self.send_error(404)  # let in, but no stream here: the monitor keeps reconnecting
                else:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_run_with_passwords_everywhere_shows_none_of_them(auth_broker, tmp_path):
    stream_pw, token, env_pw = "s3cretPW", "s3cretTK", "s3cretENV"
    secrets = (stream_pw, token, env_pw, MQ_PASSWORD)
    camera = AuthServer()
    recorder = Recorder(auth_broker.port)
    events, records = tmp_path / "events.jsonl", tmp_path / "rec"
    records.mkdir()
    rtsp = f"rtsp://admin:{stream_pw}@127.0.0.1:1/x?token={token}"  # nothing listens on port 1
    http_url = f"http://cam@127.0.0.1:{camera.port}/live.mjpg"  # its password from the environment
    env = dict(os.environ, PYTHONPATH=str(REPO), **{STREAM_PASSWORD_ENV: env_pw})
    try:
        r = subprocess.run(
            [sys.executable, "-m", "monitor", "--video", str(REPO / "samples" / "entrance.mp4")]
            + ["--url", rtsp, "--url", http_url, "--max-frames", "10", "--duration", "4", "--headless"]
            + ["--events", str(events), "--record", str(records)]
            + ["--mqtt", f"mqtt://{USER}:{MQ_PASSWORD}@127.0.0.1:{auth_broker.port}/site"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # the monitor's goodbye (its machine down, retained) came: every message before it came too
        machine = f"site/_machines/{socket.gethostname()}/status"
        assert _wait(lambda: any(t == machine and b'"up": false' in p for t, p in recorder.messages))
    finally:
        recorder.stop()
        camera.close()
    assert r.returncode == 0, r.stderr
    # what the run showed, so that the checks below are not vacuous
    assert "stream rtsp://***@127.0.0.1:1/x?***" in r.stderr  # down at start, retrying
    assert "stream http://***@127.0.0.1" in r.stdout  # the summary names each source
    statuses = [json.loads(p) for t, p in recorder.messages if t.endswith("/status")]
    assert any("reconnecting to stream rtsp://***@127.0.0.1:1/x?***" in s.get("link", "") for s in statuses)
    assert {t.split("/")[1] for t, _ in recorder.messages} >= {
        "entrance",
        "127.0.0.1-x",
        "127.0.0.1-live.mjpg",
    }
    # the real password did reach the camera's server
    assert f"Basic {base64.b64encode(f'cam:{env_pw}'.encode()).decode()}" in camera.seen
    shown = [r.stdout, r.stderr, events.read_text(), *(p.name for p in records.iterdir())]
    shown += [t for t, _ in recorder.messages] + [p.decode("utf-8", "replace") for _, p in recorder.messages]
    for secret in secrets:
        assert not [text for text in shown if secret in text], secret
    assert [p.name for p in records.iterdir()] == ["entrance.mp4"]  # the streams gave no frame to record


def test_a_refused_login_is_one_line_with_the_brokers_reason(auth_broker, capsys):
    url = f"mqtt://{USER}:wrongPW@127.0.0.1:{auth_broker.port}/site"
    with pytest.raises(UserError) as info:
        MqttPublisher(broker_from_args(url), ["door"], err=io.StringIO())
    line = str(info.value)
    assert "refused the login" in line and "unreachable" not in line and "wrongPW" not in line
    assert "not authori" in line.lower() or "bad user name or password" in line.lower()
    # `mask-monitor site` with the same: exit 2, one line
    with pytest.raises(SystemExit) as exc:
        main(["site", "--mqtt", url, "--headless", "--duration", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"mask-monitor: error: --mqtt mqtt://***@127.0.0.1:{auth_broker.port}/site: ")
    assert "refused the login" in err[0] and "wrongPW" not in err[0]


def test_the_password_from_a_file_or_the_environment_logs_in(auth_broker, tmp_path):
    url = f"mqtt://{USER}@127.0.0.1:{auth_broker.port}/site"
    pw_file = tmp_path / "mqtt-password"
    pw_file.write_text(MQ_PASSWORD + "\n")
    for broker in (
        broker_from_args(url, str(pw_file), environ={}),
        broker_from_args(url, environ={MQTT_PASSWORD_ENV: MQ_PASSWORD}),
    ):
        assert broker.password == MQ_PASSWORD and MQ_PASSWORD not in repr(broker)
        pub = MqttPublisher(broker, ["door"], err=io.StringIO())
        try:
            assert pub.connected.wait(10)
        finally:
            pub.close(timeout=1)


def test_mqtts_with_the_brokers_ca_connects_and_publishes(tmp_path):
    cert, key = _cert(tmp_path)
    b = BrokerThread(_free_port(), {"ssl": True, "certfile": cert, "keyfile": key}, _auth(tmp_path))
    b.start()
    url = f"mqtts://{USER}:{MQ_PASSWORD}@127.0.0.1:{b.port}/site"
    got: list[dict] = []
    try:
        feed = SiteFeed(broker_from_args(url, ca=cert), got.append, lambda s, d: None).start()
        assert feed.subscribed.wait(10)
        pub = MqttPublisher(broker_from_args(url, ca=cert), ["door"], err=io.StringIO())
        try:
            pub.event("door", _event(3))
            assert _wait(lambda: len(got) == 1)
        finally:
            pub.close(timeout=2)
            feed.stop()
        assert got[0]["frame"] == 3 and got[0]["source"] == "door"
        # without the CA: the system's CAs do not know this certificate; one line that says what to do
        with pytest.raises(UserError, match="certificate was not accepted.*--mqtt-ca") as info:
            MqttPublisher(broker_from_args(url), ["door"], err=io.StringIO())
        assert MQ_PASSWORD not in str(info.value)
    finally:
        b.stop()
        b.close()


@pytest.mark.parametrize(
    "url, kw, error",
    [
        ("mqtt://u@h/x", {"ca": "ca.pem"}, "is not mqtts://"),
        ("mqtts://u@h/x", {"ca": "missing.pem"}, "--mqtt-ca file missing.pem does not exist"),
        ("mqtts://u@h/x", {"ca": "bad.pem"}, "not a PEM certificate file"),
        ("mqtt://u:pw@h/x", {"password_file": "pw.txt"}, "holds a password too"),
        ("mqtt://h/x", {"password_file": "pw.txt"}, "names no user"),
        ("mqtt://u@h/x", {"password_file": "empty.txt"}, "is empty"),
        ("mqtt://u:s3cret@h:99999/x", {}, r"--mqtt mqtt://\*\*\*@h:99999/x: the port"),
    ],
)
def test_bad_broker_settings_are_one_line(url, kw, error, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    (tmp_path / "pw.txt").write_text("pw\n")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UserError, match=error) as info:
        broker_from_args(url, **kw)
    assert "s3cret" not in str(info.value)
