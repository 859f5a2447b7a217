"""monitor.decisions.compliance: the share of people (not frames) without a correct mask over a rolling
window, and the alert's threshold, hold time and hysteresis."""

from __future__ import annotations

from monitor.config import ComplianceConfig
from monitor.decisions.compliance import Compliance, ComplianceSink, site_event
from tests.monitor.sitefakes import door_run


def _c(**kw) -> Compliance:
    base = {"window_s": 100.0, "threshold": 0.5, "clear_below": 0.3, "hold_s": 10.0, "min_people": 2}
    return Compliance(**{**base, **kw})


def test_people_count_once_with_their_last_state_however_many_frames_they_are_seen():
    c = _c()
    for t in range(50):  # one person in view for 50 s, first read as incorrect, then settled as worn
        c.person("door", 1, 1 if t < 5 else 0, float(t))
    c.person("door", 2, 2, 50.0)
    c.evaluate(50.0)
    s = c.standing("door")
    assert (s.people, s.share) == (2, 0.5)
    assert c.standing().people == 2 and c.standing().share == 0.5  # the site
    c.evaluate(149.5)  # person 1 last seen at 49: gone from the 100-s window; person 2 still in
    assert (c.standing("door").people, c.standing("door").share) == (1, 1.0)
    c.evaluate(150.5)
    assert c.standing("door").share is None and c.standing("door").people == 0


def test_an_alert_rises_after_the_hold_time_and_clears_only_below_the_lower_line():
    """A scripted sequence: above the threshold for less than the hold time (nothing), then long enough
    (alert, once), then between the two lines (still on), then under the lower line long enough (cleared)."""
    c = _c(window_s=1000.0)
    seen = []
    t = 0.0

    def step(masks, until):
        nonlocal t
        while t < until:
            for key, mask in masks.items():
                c.person("door", key, mask, t)
            seen.extend((a.event, a.time, a.source) for a in c.evaluate(t))
            t += 1.0

    step({1: 2, 2: 0}, 5.0)  # 50% from t=0 ...
    step({1: 2, 2: 0, 3: 0, 4: 0}, 9.0)  # ... back to 25% at t=5, before the 10 s hold
    assert seen == []
    step({5: 2, 6: 1, 7: 2, 8: 2}, 30.0)  # 5 of 8 = 62% from t=9: alert at t=19, sources before the site
    assert seen == [("alert", 19.0, "door"), ("alert", 19.0, "")]
    assert c.standing("door").alert and c.standing().alert
    step({9: 0, 10: 0, 11: 0}, 80.0)  # 5 of 11 = 45%: under the threshold but above 30%: stays on
    assert len(seen) == 2 and c.standing("door").alert
    step({k: 0 for k in range(12, 20)}, 100.0)  # 5 of 19 = 26% < 30% from t=80: cleared at t=90
    assert seen[2:] == [("alert_cleared", 90.0, "door"), ("alert_cleared", 90.0, "")]
    assert not c.standing("door").alert


def test_no_alert_on_fewer_people_than_min_people():
    c = _c(min_people=3, hold_s=0.0)
    c.person("door", 1, 2, 0.0)
    c.person("door", 2, 2, 0.0)
    assert c.evaluate(1.0) == [] and c.standing("door").share == 1.0
    c.person("door", 3, 0, 2.0)
    assert [a.event for a in c.evaluate(2.0)] == ["alert", "alert"]


def test_the_site_alerts_on_all_sources_together_while_no_single_source_does():
    c = _c(min_people=3, hold_s=0.0)
    for src in ("front", "back"):  # 2 people each: under min_people per source, 4 at the site
        c.person(src, 1, 2, 0.0)
        c.person(src, 2, 0, 0.0)
    alerts = c.evaluate(0.0)
    assert [(a.event, a.source) for a in alerts] == [("alert", "")]
    d = alerts[0].to_dict()
    assert d["scope"] == "site" and "source" not in d and d["share"] == 0.5 and d["people"] == 4
    assert alerts[0].line().startswith("site ALERT: 50% of 4 people")


def test_the_sink_counts_people_from_a_real_pipeline_run_and_emits_alerts():
    """Three people pass (masked, no mask, incorrect): 2 of 3 without a correct mask."""
    results = list(door_run([0, 2, 1]))
    clock = [0.0]
    alerts = []
    c = Compliance.from_config(ComplianceConfig(window_s=600.0, threshold=0.5, hold_s=0.0, min_people=3))
    sink = ComplianceSink(c, alerts.append, clock=lambda: clock[0])
    for r in results:
        clock[0] = r.frame.time
        sink.frame(r)
    assert c.standing("door").people == 3 and abs(c.standing("door").share - 2 / 3) < 1e-9
    assert [(a.event, a.source) for a in alerts] == [("alert", "door"), ("alert", "")]
    assert alerts[0].time >= results[-1].frame.time - 2.0  # raised only once the third person was counted


def test_the_site_counts_mqtt_events_per_source_and_machine():
    c = _c(hold_s=0.0)
    site_event(
        c, {"event": "flag", "source": "front", "machine": "a", "track_id": 1, "mask": "not_wear"}, 0.0
    )
    site_event(
        c, {"event": "left", "source": "front", "machine": "a", "track_id": 1, "mask": "not_wear"}, 1.0
    )
    site_event(c, {"event": "left", "source": "front", "machine": "b", "track_id": 1, "mask": "wear"}, 1.0)
    site_event(c, {"event": "status", "source": "front", "machine": "b"}, 1.0)  # not a person
    c.evaluate(1.0)
    assert c.sources() == ["front@a", "front@b"]
    assert c.standing().people == 2 and c.standing().share == 0.5
