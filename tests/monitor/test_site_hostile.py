"""What `mask-monitor site` does with messages that are not the monitor's: fuzzed against the schema
(Hypothesis), then through a real broker (amqtt): a malformed event or a retained malformed status is counted
and said once, the view keeps receiving, and control characters never reach the screen or the file."""

from __future__ import annotations

import io
import json
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.broker import parse_url
from monitor.site.feed import BadMessage, SiteFeed, read_site_message
from monitor.site.view import SiteView, event_line

pytest.importorskip("amqtt")

from tests.monitor.test_mqtt import BrokerThread, _free_port, _wait  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
EVENT_KEYS = ["event", "time", "frame", "track_id", "box", "mask", "gender", "age", "class", "confidence"]
# objects with the monitor's keys and any values: most are wrong in a way the schema must name
near_events = st.fixed_dictionaries(
    {"event": st.sampled_from(["flag", "left"]) | json_values, "time": st.floats() | json_values},
    optional={k: json_values for k in EVENT_KEYS[2:] + ["source", "machine"]},
)
STATUS_KEYS = [
    "up",
    "state",
    "link",
    "fps",
    "in_view",
    "masked",
    "incorrect",
    "no_mask",
    "dropped",
    "machine",
]
near_status = st.fixed_dictionaries({}, optional={k: json_values for k in STATUS_KEYS + ["sources"]})
topics = st.sampled_from(["p/door1/events", "p/door1/status", "p/_machines/h1/status", "p/x\x1b[2J/events"])


def _no_control(v) -> bool:
    if isinstance(v, str):
        return all(unicodedata.category(c)[0] != "C" for c in v)
    if isinstance(v, dict):
        return all(_no_control(k) and _no_control(x) for k, x in v.items())
    if isinstance(v, list):
        return all(_no_control(x) for x in v)
    return True


def _feed_view(topic: str, payload: bytes, view: SiteView) -> None:
    """What SiteFeed does with one message, without a broker."""
    try:
        kind, source, data = read_site_message(topic, payload)
    except BadMessage as exc:
        view.on_bad(topic, str(exc))
        return
    if kind == "event":
        view.on_event(data)
    elif kind == "status":
        view.on_status(source, data)


@FUZZ
@given(topic=topics, body=near_events | near_status | json_values)
def test_any_json_is_checked_or_refused_and_the_view_renders_what_passes(topic, body):
    try:
        payload = json.dumps(body).encode()
    except ValueError:  # NaN is written as NaN: JSON readers may still take it
        payload = json.dumps(body, allow_nan=True).encode()
    view = SiteView(None, io.StringIO(), headless=True)
    view.err = io.StringIO()
    try:
        kind, source, data = read_site_message(topic, payload)
    except BadMessage as exc:
        assert str(exc)  # a reason to show
        return
    assert _no_control(data) and _no_control(source)
    _feed_view(topic, payload, view)
    view.render()  # the screen's input: nothing in it raises
    if kind == "event":
        line = event_line(data)
        assert all(c.isprintable() for c in line)


@FUZZ
@given(topic=st.text(max_size=30), payload=st.binary(max_size=200))
def test_any_bytes_on_any_topic_are_refused_with_a_reason_or_checked(topic, payload):
    try:
        _, source, data = read_site_message(topic, payload)
    except BadMessage as exc:
        assert str(exc)
        return
    assert isinstance(data, dict) and _no_control(data) and _no_control(source)


@pytest.mark.parametrize(
    "topic, body, reason",
    [
        ("p/_machines/h/status", {"up": False, "sources": 5}, "sources = 5 is not a list"),
        ("p/door/events", {"event": "flag", "time": "abc"}, "time = 'abc' is not a number"),
        ("p/door/events", {"event": "flag", "time": float("nan")}, "time = nan"),
        ("p/door/status", {"fps": 1e400}, "fps = inf"),
        ("p/door/status", {"in_view": -1}, "in_view = -1 is not a whole number"),
        ("p/door/status", {"up": "yes"}, "up = 'yes' is not true or false"),
        ("p/door/events", [1, 2], "not a JSON object"),
        ("p/door/events", {"event": "flag", "time": 1.0, "box": [1, 2, 3]}, "box ="),
    ],
)
def test_the_issue_s_messages_are_refused_with_a_reason(topic, body, reason):
    with pytest.raises(BadMessage, match=reason.replace("[", r"\[").replace("(", r"\(")):
        read_site_message(topic, json.dumps(body).encode())


def test_deep_or_huge_payloads_are_refused():
    with pytest.raises(BadMessage, match="not JSON|nested"):
        read_site_message("p/d/events", b"[" * 30000 + b"]" * 30000)
    with pytest.raises(BadMessage, match="nested too deeply"):
        read_site_message("p/d/status", json.dumps({"link": {"a": {"b": {"c": {}}}}}).encode())
    with pytest.raises(BadMessage, match="bytes"):
        read_site_message("p/d/status", b" " * 70000)


def test_control_characters_are_stripped_from_names_and_text():
    kind, source, data = read_site_message(
        "p/door\x1b[2J1/status", json.dumps({"link": "li\x07ve\u202e", "machine": "h\r\n1"}).encode()
    )
    assert (kind, source, data) == ("status", "door[2J1", {"link": "live", "machine": "h1"})


def test_malformed_messages_retained_or_not_never_stop_the_site_view(tmp_path):
    import paho.mqtt.client as mqtt

    broker = BrokerThread(_free_port())
    broker.start()
    raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hostile")
    view = SiteView(tmp_path / "site.jsonl", io.StringIO(), headless=True)
    view.err = io.StringIO()
    feed = None
    try:
        raw.connect("127.0.0.1", broker.port)
        raw.loop_start()
        # retained before the viewer starts: each would have stopped it at start
        for topic, body in [
            ("site1/_machines/h1/status", {"up": False, "sources": 5}),
            ("site1/door1/status", {"up": True, "fps": "fast"}),
        ]:
            raw.publish(topic, json.dumps(body), qos=1, retain=True).wait_for_publish(10)
        feed = SiteFeed(
            parse_url(f"mqtt://127.0.0.1:{broker.port}/site1"),
            view.on_event,
            view.on_status,
            on_bad=view.on_bad,
        ).start()
        assert feed.subscribed.wait(10)
        for payload in [json.dumps({"event": "flag", "time": "abc"}), "not json", "[1]"]:
            raw.publish("site1/door1/events", payload, qos=1).wait_for_publish(10)
        good = {
            "event": "flag",
            "time": 3.5,
            "frame": 7,
            "track_id": 2,
            "mask": "not_wear",
            "source": "d\x1b[31m1",
        }
        raw.publish("site1/door1/events", json.dumps(good), qos=1).wait_for_publish(10)
        assert _wait(lambda: view.event_count == 1)
        raw.publish("site1/door2/status", json.dumps({"up": True, "link": "live"}), qos=1).wait_for_publish(
            10
        )
        assert _wait(lambda: "door2" in view.status)  # still receiving after five bad messages
    finally:
        if feed is not None:
            feed.stop()
        raw.loop_stop()
        raw.disconnect()
        view.close()
        broker.stop()
        broker.close()
    assert feed.bad == view.bad == 5
    warnings = view.err.getvalue().splitlines()
    assert len(warnings) == 1 and "ignored a malformed message on site1/" in warnings[0]
    assert "door1" not in view.status  # its only status was malformed
    out = view.out.getvalue()
    assert "\x1b" not in out and "d[31m1 FLAG person #2" in out
    rows = [json.loads(x) for x in (tmp_path / "site.jsonl").read_text().splitlines()]
    assert rows == [{**good, "source": "d[31m1"}]


def test_a_status_carries_its_link_state_and_a_state_the_monitor_never_sends_is_refused():
    from monitor.site.view import _panel
    from monitor.sources.link import LinkState

    body = json.dumps({"up": False, "state": "reconnecting"}).encode()
    _, _, data = read_site_message("p/door1/status", body)
    assert _panel("door1", data).state is LinkState.RECONNECTING and not _panel("door1", data).up
    _, _, old = read_site_message("p/door1/status", json.dumps({"up": False, "link": "x"}).encode())
    assert _panel("door1", old).state is LinkState.DOWN  # a monitor from before: its `up` alone
    with pytest.raises(BadMessage, match="state = 'sideways' is not one of connecting, up"):
        read_site_message("p/door1/status", json.dumps({"state": "sideways"}).encode())
