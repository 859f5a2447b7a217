"""Zones: per source, the polygon inside which faces count, and the shortest face that counts.

A face counts when the centre of its box lies inside the polygon (or on its edge) and the box is at least
`min_face_height` pixels tall. The centre, not the bottom of the box: the box is a face, not a whole body, and
an entrance is framed so that the heads of the people passing through it are inside the zone while faces
beyond the door (a corridor, a street through the glass) are not. A face that does not count is not tracked
for decisions (never voted on, never flagged) and is drawn dimmed in recordings and evidence (`draw_zone`).

The polygon is `[[x, y], ...]` in `[[sources]]` `zone`: with every value in 0-1, fractions of the frame's
width and height (it fits any resolution); otherwise frame pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from engines.errors import UserError
from monitor.config import zone_problem

if TYPE_CHECKING:
    import numpy as np

    from monitor.config import SourceConfig

Box = tuple[float, float, float, float]
T = TypeVar("T")

ZONE_COLOUR = (255, 200, 0)  # BGR: the polygon's outline
DIM = 0.4  # what is outside the zone keeps this share of its brightness


@dataclass(frozen=True)
class Zone:
    points: tuple[tuple[float, float], ...] = ()  # as configured; empty: the whole frame
    min_face_height: int = 0
    fractions: bool = False  # every value in 0-1: fractions of the frame's width and height
    _px: dict[tuple[int, int], tuple[tuple[float, float], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def parse(cls, points: Any, min_face_height: int = 0, where: str = "zone") -> Zone:
        """A zone from config values; bad input is one UserError naming `where` (the source)."""
        why = zone_problem(points)
        if why:
            raise UserError(f"{where}: {why}")
        if isinstance(min_face_height, bool) or not isinstance(min_face_height, int) or min_face_height < 0:
            raise UserError(f"{where}: min_face_height must be a whole number >= 0, got {min_face_height!r}")
        pts = tuple((float(x), float(y)) for x, y in points)
        return cls(pts, min_face_height, bool(pts) and all(v <= 1.0 for p in pts for v in p))

    @classmethod
    def of_source(cls, src: SourceConfig, name: str) -> Zone | None:
        """The zone of one `[[sources]]` table (None: neither a polygon nor a minimum face height)."""
        if not src.zone and not src.min_face_height:
            return None
        return cls.parse([list(p) for p in src.zone], src.min_face_height, f"[[sources]] {name}: zone")

    @property
    def whole_frame(self) -> bool:
        return not self.points

    def polygon(self, width: int, height: int) -> tuple[tuple[float, float], ...]:
        """The polygon in the pixels of a `width` x `height` frame."""
        key = (width, height)
        if key not in self._px:
            sx, sy = (width, height) if self.fractions else (1.0, 1.0)
            self._px[key] = tuple((x * sx, y * sy) for x, y in self.points)
        return self._px[key]

    def keeps(self, box: Box, width: int, height: int) -> bool:
        """Whether a face with this box (x1, y1, x2, y2 in pixels) counts in a `width` x `height` frame."""
        x1, y1, x2, y2 = box
        if y2 - y1 < self.min_face_height:
            return False
        return self.whole_frame or inside(((x1 + x2) / 2, (y1 + y2) / 2), self.polygon(width, height))

    def filter(self, items: Iterable[T], width: int, height: int, box: Any = None) -> list[T]:
        """The items (faces, tracks: anything with `.box`, or `box(item)`) that count."""
        get = box or (lambda it: it.box)
        return [it for it in items if self.keeps(tuple(get(it)), width, height)]  # type: ignore[arg-type]


def inside(pt: tuple[float, float], poly: Sequence[tuple[float, float]]) -> bool:
    """Point in polygon (even-odd ray casting); a point on an edge or a vertex is inside."""
    x, y = pt
    n = len(poly)
    hit = False
    for i in range(n):
        (ax, ay), (bx, by) = poly[i], poly[(i + 1) % n]
        cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax)
        if cross == 0 and min(ax, bx) <= x <= max(ax, bx) and min(ay, by) <= y <= max(ay, by):
            return True  # on this edge
        if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
            hit = not hit
    return hit


def draw_zone(image: np.ndarray, zone: Zone | None, dim: float = DIM) -> np.ndarray:
    """A copy of the frame with everything outside the zone dimmed (faces there included) and the polygon
    drawn: for `mask-monitor zones`, recordings and evidence. No zone (or the whole frame): a plain copy."""
    import cv2
    import numpy as np

    out = image.copy()
    if zone is None or zone.whole_frame:
        return out
    h, w = out.shape[:2]
    pts = np.array([[round(x), round(y)] for x, y in zone.polygon(w, h)], dtype=np.int32)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(mask, [pts], 255)
    outside = mask == 0
    out[outside] = (out[outside].astype(np.float32) * dim).astype(np.uint8)
    cv2.polylines(out, [pts], True, ZONE_COLOUR, max(1, round(h / 240)), cv2.LINE_AA)
    return out


def zone_preview(image: np.ndarray, zone: Zone | None, name: str = "") -> np.ndarray:
    """The frame `mask-monitor zones` writes: the zone drawn and, on a strip at the top, what counts."""
    import cv2

    out = draw_zone(image, zone)
    if zone is None or zone.whole_frame:
        text = "no zone: the whole frame counts"
    else:
        text = f"zone: {len(zone.points)} points ({'fractions' if zone.fractions else 'pixels'})"
    if zone is not None and zone.min_face_height:
        text += f", faces >= {zone.min_face_height} px"
    if name:
        text = f"{name}: {text}"
    scale = max(out.shape[0] / 960.0, 0.4)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, 1)
    cv2.rectangle(out, (0, 0), (tw + 12, th + base + 10), (0, 0, 0), -1)
    cv2.putText(out, text, (6, th + 5), font, scale, ZONE_COLOUR, 1, cv2.LINE_AA)
    return out
