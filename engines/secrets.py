"""Secrets in the addresses users give (rtsp://, http://, mqtt://): one redaction for every line, screen,
status message and error; and where passwords come from other than the command line (where `ps` and the
shell history show them): the environment (`*_PASSWORD_ENV`) or a file (engines.fileio.read_password_file).

`redact_url` turns the user and password of every URL in a text into `***` (`rtsp://***@host/x`) and its
query string too (`http://host/x?***`: tokens travel there); it works on free text (OpenCV's and paho's
errors, tracebacks). `redact_address` does the same for one address as a whole (a password may hold a
space or a quote, which end a URL in free text). The real address is kept only where it is used: to open
the stream or connect to the broker.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

MASK = "***"
STREAM_PASSWORD_ENV = "MASK_MONITOR_STREAM_PASSWORD"
MQTT_PASSWORD_ENV = "MASK_MONITOR_MQTT_PASSWORD"

_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
_URL = re.compile(rf"(?<![A-Za-z0-9+.-])({_SCHEME})([^\s\"<>]*)")
_PASSWORD_SAFE = "!$&'()*+,;=-._~"  # kept as typed in a URL's user part; others (: @ / ? # % space) escaped


def _redact_rest(rest: str) -> str:
    """What follows `scheme://`: the user part (up to the last @: a password may hold an @) and the query."""
    at = rest.rfind("@")
    if at >= 0:
        rest = MASK + rest[at:]
    q = rest.find("?")
    if q >= 0:
        rest = rest[: q + 1] + MASK
    return rest


def redact_url(text: object) -> str:
    """`text` with the user, password and query string of every URL in it shown as `***`."""
    return _URL.sub(lambda m: m.group(1) + _redact_rest(m.group(2)), str(text))


def redact_address(address: object) -> str:
    """One address the user gave (a stream URL, a camera index, a file path), safe to show."""
    text = str(address)
    m = re.match(_SCHEME, text)
    return text[: m.end()] + _redact_rest(text[m.end() :]) if m else text


def with_password(url: str, password: str | None) -> str:
    """`url` with `password` put in, where it names a user and no password (`rtsp://admin@host/x`); any
    other URL as it is."""
    if not password:
        return url
    u = urlsplit(url)
    head = f"{u.scheme}://"
    if not u.scheme or not url.startswith(head) or "@" not in u.netloc:
        return url
    user, _, host = u.netloc.rpartition("@")
    if ":" in user or not user:
        return url
    return f"{head}{user}:{quote(password, safe=_PASSWORD_SAFE)}@{host}{url[len(head) + len(u.netloc) :]}"
