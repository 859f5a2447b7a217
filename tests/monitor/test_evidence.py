"""monitor.outputs.evidence: the snapshot of a flag (the flagged face sharp, every other face blurred), the
clip from the ring buffer, the ring's bounds, private files under retention, an unwritable folder."""

from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest

from engines.errors import UserError
from monitor.config import EvidenceConfig
from monitor.decisions.zones import Zone
from monitor.outputs.evidence import EvidenceSink, FrameRing, Shot, evidence_kept
from monitor.outputs.retention import prune
from tests.monitor.sitefakes import door_run

BARE, MASKED = (40, 60, 100, 140), (200, 60, 260, 140)  # x1, y1, x2, y2: a bare face beside a masked one


def run(sink: EvidenceSink, people, fps: float = 10.0):
    flags = []
    for r in door_run(people, fps=fps):
        sink.frame(r)
        flags += [e for e in r.events if e.event == "flag"]
    sink.close()
    return flags


def inner_var(img: np.ndarray, box, inset: int = 6) -> float:
    x1, y1, x2, y2 = box
    return float(img[y1 + inset : y2 - inset, x1 + inset : x2 - inset].astype(np.float32).var())


def test_the_snapshot_blurs_every_other_face_and_not_the_flagged_one(tmp_path):
    sink = EvidenceSink(tmp_path / "evidence")
    flags = run(sink, [[(2, BARE), (0, MASKED)]])
    assert len(flags) == 1 and flags[0].box == BARE
    paths = sink.evidence_for(flags[0])
    assert paths is not None and paths["clip"] is None
    snap = tmp_path / "evidence" / "door_f00000001_track1_not_wear.jpg"
    assert paths["snapshot"] == str(snap) and snap.is_file()
    assert os.stat(snap).st_mode & 0o777 == 0o600 and os.stat(tmp_path / "evidence").st_mode & 0o777 == 0o700
    img = cv2.imread(str(snap))
    # the textured faces vary by about +-50 levels: kept sharp, the variance stays; blurred, it is gone
    assert inner_var(img, BARE) > 300
    assert inner_var(img, MASKED) < 100  # (the original: about 800)
    x1, y1, x2, y2 = BARE
    assert img[y1, (x1 + x2) // 2].tolist() == pytest.approx([40, 40, 230], abs=40)  # the flagged box drawn


def test_a_clip_holds_the_seconds_before_and_after_the_flag(tmp_path):
    sink = EvidenceSink(tmp_path / "ev", clip_s=0.5)
    flags = run(sink, [[(0, MASKED)], [(2, BARE), (0, MASKED)]], fps=10.0)
    (flag,) = flags
    clip = sink.evidence_for(flag)["clip"]
    assert clip.endswith(".mp4") and os.stat(clip).st_mode & 0o777 == 0o600
    cap = cv2.VideoCapture(clip)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    assert len(frames) == 11  # 0.5 s before (5 frames at 10 fps), the flag's, 0.5 s after (5)
    on_flag = frames[5]
    assert inner_var(on_flag, BARE) > 300 and inner_var(on_flag, MASKED) < 100
    assert sink.snapshots == 1 and sink.clips == 1


def test_the_ring_is_bounded_by_seconds_and_by_bytes():
    ring = FrameRing(max_s=1.0, max_bytes=10_000)
    for i in range(50):
        ring.add(Shot(i * 0.1, i, b"x" * 100, {}))
    assert len(ring) == 11 and ring.since(0.0)[0].index == 39  # 1 s at 10 frames/s
    for i in range(50, 60):
        ring.add(Shot(5.0 + i * 0.01, i, b"x" * 4000, {}))
    assert ring.bytes <= 10_000 and len(ring) == 2


def test_an_unwritable_folder_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError) as exc:
        EvidenceSink(tmp_path / "file" / "evidence")
    assert str(exc.value).startswith(f"evidence folder {tmp_path / 'file' / 'evidence'}: cannot write (")
    assert "\n" not in str(exc.value)


def test_evidence_is_kept_under_the_retention_rules(tmp_path):
    written = []
    sink = EvidenceSink(tmp_path / "ev", clip_s=0.3, wrote=lambda flag, n: written.append((flag, n)))
    run(sink, [[(2, BARE)], [(1, BARE)]])
    files = sorted(p.name for p in (tmp_path / "ev").iterdir())
    assert len(files) == 4 and {p[-4:] for p in files} == {".jpg", ".mp4"}
    assert [f for f, _ in written] == ["--evidence"] * 4 and all(n > 0 for _, n in written)
    old = time.time() - 40 * 86400
    first = tmp_path / "ev" / files[0]
    os.utime(first, (old, old))
    kept = evidence_kept(tmp_path / "ev", EvidenceConfig())
    res = prune(kept)
    assert res.removed == 1 and not first.exists() and res.kept == 3


def test_outside_the_zone_is_blurred_and_dimmed(tmp_path):
    zone = Zone.parse([[0, 0], [0.5, 0], [0.5, 1], [0, 1]])
    sink = EvidenceSink(tmp_path / "ev", zones={"door": zone})
    frame = np.full((240, 320, 3), 200, np.uint8)
    frame[::2] = 100  # stripes: blurring shows
    out = sink.render("door", frame, {}, 0)
    assert inner_var(out, (20, 20, 140, 220)) > 1000  # inside the zone: as it was
    right = out[20:220, 180:300].astype(np.float32)
    assert right.var() < 50 and right.mean() < 100  # outside: blurred and dimmed
