"""The MQTT broker of `--mqtt` (the monitor publishes, `mask-monitor site` subscribes): its address, TLS,
login, and the paho client both sides connect with (paho-mqtt is imported only when a client is made).

`mqtts://` speaks TLS (the system's CAs, or `--mqtt-ca FILE`); the password comes from the URL, from
`--mqtt-password-file` or from MASK_MONITOR_MQTT_PASSWORD, and is never shown: every line names the broker
as `MqttUrl.shown` (user and password as ***). A broker that refuses the login at start is one UserError with
its reason, not "unreachable".
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urlsplit

from engines.errors import UserError
from engines.fileio import read_password_file, require_file
from engines.secrets import MQTT_PASSWORD_ENV, redact_address

LOGIN_WAIT_S = 5.0  # at start, how long to wait for the broker's answer to the login
PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    prefix: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False  # mqtts://
    ca: str | None = None  # --mqtt-ca: the CA file that signed the broker's certificate (None: the system's)

    def topic(self, source: str, kind: str) -> str:
        return f"{self.prefix}/{source}/{kind}" if self.prefix else f"{source}/{kind}"

    @property
    def shown(self) -> str:
        """The broker as every line names it: mqtts://***@host:port/prefix."""
        user = "***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix}"


def parse_url(url: str) -> MqttUrl:
    """mqtt[s]://[user[:password]@]host[:port][/prefix] (port 1883, 8883 with TLS; prefix "mask-monitor")."""
    u = urlsplit(url)
    shown = redact_address(url)
    if u.scheme not in PORTS or not u.hostname:
        raise UserError(f"--mqtt {shown}: expected mqtt://host[:port][/prefix] or mqtts:// (TLS)")
    try:
        port = u.port or PORTS[u.scheme]
    except ValueError:
        raise UserError(f"--mqtt {shown}: the port is not a number from 1 to 65535") from None
    prefix = u.path.strip("/") or "mask-monitor"
    if any(c in prefix for c in "+#"):
        raise UserError(f"--mqtt {shown}: the prefix may not contain + or #")
    user = unquote(u.username) if u.username else None
    password = unquote(u.password) if u.password else None
    return MqttUrl(u.hostname, port, prefix, user, password, u.scheme == "mqtts")


def broker_from_args(
    url: str,
    password_file: str | None = None,
    ca: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> MqttUrl:
    """--mqtt URL, --mqtt-password-file FILE and --mqtt-ca FILE -> the broker, checked before anything
    loads. The password: the URL's, else the file's, else MASK_MONITOR_MQTT_PASSWORD (used where the URL
    names a user)."""
    broker = parse_url(url)
    if ca is not None:
        if not broker.tls:
            raise UserError(f"--mqtt-ca {ca}: the broker address {broker.shown} is not mqtts:// (TLS)")
        require_file(ca, "--mqtt-ca file")
        try:
            ssl.create_default_context(cafile=ca)
        except (ssl.SSLError, ValueError) as exc:
            raise UserError(f"--mqtt-ca {ca}: not a PEM certificate file ({exc})") from None
        broker = replace(broker, ca=ca)
    if password_file is not None:
        if broker.password:
            raise UserError(
                f"--mqtt-password-file {password_file}: the address {broker.shown} holds a password too; "
                "give it once (the file keeps it out of `ps` and the shell history)"
            )
        if not broker.username:
            raise UserError(
                f"--mqtt-password-file {password_file}: the address {broker.shown} names no user "
                "(mqtt://USER@host)"
            )
        return replace(broker, password=read_password_file(password_file, "--mqtt-password-file"))
    if broker.username and not broker.password and environ.get(MQTT_PASSWORD_ENV):
        return replace(broker, password=environ[MQTT_PASSWORD_ENV])
    return broker


def new_client(url: MqttUrl, client_id: str, queue_size: int = 0):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set(ca_certs=url.ca)  # None: the system's CAs; the host name is checked either way
    if queue_size:
        client.max_queued_messages_set(queue_size)
    client.reconnect_delay_set(0.25, 5)
    return client


def connect_client(client, url: MqttUrl) -> bool:
    """Connect now (then paho's thread keeps the link): True if the broker took the connection; False if it
    cannot be reached now (paho's thread retries). A failed TLS handshake is the user's to fix: one line."""
    try:
        client.connect(url.host, url.port, keepalive=10)
        connected = True
    except ssl.SSLCertVerificationError as exc:
        raise UserError(
            f"--mqtt {url.shown}: the broker's TLS certificate was not accepted ({exc.verify_message}); "
            "give the CA that signed it with --mqtt-ca FILE"
        ) from None
    except ssl.SSLError as exc:
        raise UserError(f"--mqtt {url.shown}: the TLS handshake failed ({exc.reason or exc})") from None
    except ValueError as exc:
        raise UserError(f"--mqtt {url.shown}: {exc}") from None
    except OSError:
        client.connect_async(url.host, url.port, keepalive=10)
        connected = False
    client.loop_start()
    return connected


class Login:
    """The broker's answer to the login: `answered` once a CONNACK came; `refused`: its reason, if it said
    no."""

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.refused: str | None = None

    def answer(self, reason_code) -> bool:
        """True if the broker accepted the login."""
        failed = bool(getattr(reason_code, "is_failure", False))
        self.refused = str(reason_code) if failed else None
        self.answered.set()
        return not failed

    def check(self, url: MqttUrl, reachable: bool, stop: Callable[[], None]) -> None:
        """At start: a refused login is one UserError with the broker's reason (after `stop()`)."""
        if reachable:
            self.answered.wait(LOGIN_WAIT_S)
        if self.refused is not None:
            stop()
            raise UserError(f"--mqtt {url.shown}: the broker refused the login: {self.refused}")


# --- what `site` accepts from the broker -------------------------------------------------------------------
# Anyone who can publish under the prefix can send anything, retained too: every message is checked against
# these schemas, its text freed of control characters, before the site view sees it.
