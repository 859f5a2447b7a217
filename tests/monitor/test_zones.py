"""monitor.decisions.zones: the polygon inside which faces count, the minimum face height, the preview."""

from __future__ import annotations

import numpy as np
import pytest

from engines.config import ConfigError
from engines.errors import UserError
from monitor.config import SourceConfig, from_dict
from monitor.decisions.zones import Zone, draw_zone, inside, zone_preview
from tests.monitor.sitefakes import BlobDetector, door_run

LEFT_HALF = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]


def test_a_polygon_of_fewer_than_3_points_is_one_line_naming_the_file_and_the_source():
    with pytest.raises(ConfigError) as exc:
        from_dict({"sources": [{"name": "front", "zone": [[0, 0], [1, 1]]}]}, "site.toml")
    assert str(exc.value) == (
        "site.toml: [[sources]] #1 (front).zone: a polygon needs at least 3 points [x, y], got 2"
    )
    with pytest.raises(UserError, match=r"^\[\[sources\]\] front: zone: point 2 must be \[x, y\]"):
        Zone.of_source(SourceConfig(name="front", zone=((0.0, 0.0), (1.0,), (1.0, 1.0))), "front")
    with pytest.raises(UserError, match="coordinates must be numbers >= 0"):
        Zone.parse([[0, 0], [-5, 0], [1, 1]], where="front")


def test_fractions_and_pixels_and_the_box_centre():
    frac = Zone.parse(LEFT_HALF)
    px = Zone.parse([[0, 0], [320, 0], [320, 480], [0, 480]])
    assert frac.fractions and not px.fractions
    for z in (frac, px):  # the same zone on a 640x480 frame
        assert z.keeps((100, 100, 200, 200), 640, 480)
        assert not z.keeps((400, 100, 500, 200), 640, 480)
        assert z.keeps((250, 100, 390, 200), 640, 480)  # centre x = 320: on the edge counts
        assert not z.keeps((270, 100, 390, 200), 640, 480)  # most of it inside, centre outside
    assert frac.polygon(100, 50)[1] == (50.0, 0.0)
    assert Zone.of_source(SourceConfig(), "front") is None  # no zone, no minimum: everything counts


def test_min_face_height_without_a_polygon():
    z = Zone.of_source(SourceConfig(min_face_height=40), "front")
    assert z is not None and z.whole_frame
    assert z.keeps((0, 0, 30, 40), 640, 480) and not z.keeps((0, 0, 30, 39), 640, 480)


def test_point_in_a_concave_polygon():
    u = [(0, 0), (30, 0), (30, 30), (20, 30), (20, 10), (10, 10), (10, 30), (0, 30)]  # a U
    assert inside((5, 20), u) and inside((25, 20), u) and not inside((15, 20), u) and inside((15, 5), u)
    assert inside((20, 20), u)  # on an inner edge


class ZonedDetector(BlobDetector):
    """The detector's faces through the zone's filter, as the pipeline applies it before the tracker."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    def detect(self, frame, **kw):
        h, w = frame.shape[:2]
        return self.zone.filter(super().detect(frame, **kw), w, h)


def test_a_face_outside_the_zone_is_never_flagged(monkeypatch):
    """Two people with no mask side by side, again and again: only the one inside the zone is flagged."""
    inside_box, outside_box = (30, 60, 90, 140), (220, 60, 280, 140)
    people = [[(2, inside_box), (2, outside_box)]] * 3
    zone = Zone.parse(LEFT_HALF)
    monkeypatch.setattr("tests.monitor.sitefakes.BlobDetector", lambda: ZonedDetector(zone))
    flags = [e for r in door_run(people) for e in r.events if e.event == "flag"]
    assert len(flags) == 3 and all(e.box == inside_box for e in flags)
    monkeypatch.undo()  # without the zone both are flagged: the test could fail
    assert len([e for r in door_run(people) for e in r.events if e.event == "flag"]) == 6


def test_drawing_dims_everything_outside_and_draws_the_polygon():
    img = np.full((240, 320, 3), 200, np.uint8)
    out = draw_zone(img, Zone.parse(LEFT_HALF))
    assert out[120, 80].tolist() == [200, 200, 200]  # inside: untouched
    assert out[120, 240].tolist() == [80, 80, 80]  # outside: dimmed
    assert (draw_zone(img, None) == img).all() and out is not img
    preview = zone_preview(img, Zone.parse(LEFT_HALF, 40), "front")
    assert preview.shape == img.shape and (preview != out).any()  # the text line
