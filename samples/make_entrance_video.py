"""Make samples/entrance.mp4 and samples/entrance_truth.json: people entering a door one after another.

Only public-domain / BSD material (see samples/faces/SOURCES.md): the photos in samples/faces and the BSD
"carphone" test clip (samples/carphone.mp4). Each appearance is a head-and-shoulders cut-out that slides
in from one side, stands for about 1.5 s (swaying a little), and leaves on the other side, wearing a mask
(drawn with train.synth.mask_render.draw_mask from the MTCNN landmarks), a mask under the nose or on the chin,
or none. The frame is a drawn entrance with light flicker and sensor noise; the mp4v encoder adds its own
artefacts. Every frame is a pure function of (seed, frame index), so the script is deterministic.

    python samples/make_entrance_video.py            # writes the video and the ground truth
    python samples/make_entrance_video.py --check    # ... and reports MTCNN's per-person detection rate

Ground truth per person: id, source, mask state (wear / incorrect / not_wear, with the placement),
gender, age group, the first and last frame in which the face box is fully inside the frame, and the face
box in each of those frames.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from engines.config import load_config  # noqa: E402
from engines.faces import FIRST_DEMO_DETECTOR, Face, FaceDetector, create_detector  # noqa: E402
from engines.fileio import atomic_path, atomic_write_text  # noqa: E402
from engines.labels import AGE_NAMES, age_group  # noqa: E402
from train.synth.build import find_face  # noqa: E402
from train.synth.mask_render import MaskStyle, draw_mask  # noqa: E402

W, H, FPS = 640, 480, 25
ENTER, STAND, LEAVE, GAP = 11, 36, 11, 2  # frames per phase of one appearance
SEED = 7
NOISE = 2.0  # sensor noise, grey levels
CARPHONE = HERE / "carphone.mp4"

# source -> (file, gender, age in years, note). Ages as in samples/faces/labels.csv (see the comments there).
SOURCES = {
    "astronaut": ("faces/astronaut.png", "female", 42, "Eileen Collins, NASA portrait c. 1998"),
    "obama": ("faces/obama.jpg", "male", 47, "Barack Obama, official portrait, January 2009"),
    "obama2": ("faces/obama2.jpg", "male", 49, "Barack Obama, White House photo, undated (2009-2017)"),
    "obama3": ("faces/obama3.jpg", "male", 50, "Barack Obama, White House photo, undated (2009-2017)"),
    "biden": ("faces/biden.jpg", "male", 68, "Joe Biden, White House photo, undated (2009-2017)"),
    "carphone": ("carphone.mp4", "male", 25, "man in the 'carphone' test clip (1990s); age a guess: 20-30"),
}

# (source, state, placement, mask style, enters from, face height px)
CAST = [
    ("astronaut", "wear", "over_nose", "surgical_blue", "left", 175),
    ("obama", "not_wear", None, None, "right", 185),
    ("biden", "incorrect", "under_nose", "surgical_white", "left", 200),
    ("carphone", "wear", "over_nose", "surgical_blue", "right", 170),
    ("obama2", "wear", "over_nose", "cloth_black", "left", 210),
    ("obama3", "incorrect", "chin", "cloth_grey", "right", 165),
    ("astronaut", "not_wear", None, None, "left", 205),
    ("biden", "wear", "over_nose", "pattern_dots", "right", 160),
    ("carphone", "incorrect", "under_nose", "surgical_white", "left", 190),
    ("obama3", "not_wear", None, None, "right", 215),
]


@dataclass
class Appearance:
    id: int
    source: str
    state: str
    placement: str | None
    style: str | None
    side: str
    face_height: float
    start: int
    stand_x: float
    seed: int
    still: tuple[np.ndarray, np.ndarray, Face] | None = None  # photo: (image with mask, alpha, face), scaled
    clip_offset: int = 0

    @property
    def end(self) -> int:
        return self.start + ENTER + STAND + LEAVE - 1


@dataclass
class Plan:
    seed: int
    appearances: list[Appearance]
    background: np.ndarray
    carphone: list[np.ndarray] = field(default_factory=list)
    carphone_faces: list[Face] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return self.appearances[-1].end + 1 + GAP


# --- sources ----------------------------------------------------------------------------------------------


def _cutout(shape: tuple[int, int], face: Face) -> np.ndarray:
    """Head-and-shoulders alpha (0..1 float32) around `face`, soft-edged, down to the image's bottom."""
    h, w = shape
    alpha = np.zeros((h, w), np.float32)
    cx, cy = face.center
    fw, fh = face.width, face.height
    cv2.ellipse(alpha, (int(cx), int(cy - 0.1 * fh)), (int(1.05 * fw), int(1.05 * fh)), 0, 0, 360, 1.0, -1)
    top = int(cy + 0.75 * fh)
    cv2.ellipse(alpha, (int(cx), int(top + 1.4 * fh)), (int(1.5 * fw), int(1.5 * fh)), 0, 0, 360, 1.0, -1)
    cv2.rectangle(alpha, (int(cx - 1.5 * fw), int(top + 1.4 * fh)), (int(cx + 1.5 * fw), h), 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.1 * fw, 1.0))
    alpha[0], alpha[:, 0], alpha[:, -1] = (
        0,
        0,
        0,
    )  # warped with replicated borders: only the body continues down
    return alpha


def _scaled(image: np.ndarray, face: Face, height: float) -> tuple[np.ndarray, Face]:
    s = height / face.height
    img = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return img, Face(tuple(v * s for v in face.box), face.score, face.landmarks * s)


def _load_carphone(detector: FaceDetector) -> tuple[list[np.ndarray], list[Face]]:
    """The clip's frames and its face per frame (found on every other frame, interpolated between, smoothed
    over 5 frames so that a drawn mask does not jitter)."""
    cap = cv2.VideoCapture(str(CARPHONE))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read {CARPHONE}")
    known, rows = [], []
    for i in list(range(0, len(frames), 2)) + ([len(frames) - 1] if len(frames) % 2 == 0 else []):
        big = cv2.resize(frames[i], None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)
        face = find_face(detector, big)
        if face is not None:
            known.append(i)
            rows.append(np.r_[np.array(face.box), face.landmarks.ravel()] / 1.5)
    if len(known) < 2:
        raise SystemExit(f"no face found in {CARPHONE}")
    rows_arr = np.array(rows)
    arr = np.stack(
        [np.interp(np.arange(len(frames)), known, rows_arr[:, j]) for j in range(rows_arr.shape[1])], 1
    )
    kernel = np.ones(5) / 5
    padded = np.pad(arr, ((2, 2), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(arr.shape[1])], axis=1)
    faces = [Face(tuple(row[:4]), 1.0, row[4:].reshape(5, 2).astype(np.float32)) for row in smooth]
    return frames, faces


def _background(rng: np.random.Generator) -> np.ndarray:
    """A plain entrance: wall, a door with a dim corridor behind, a floor, a sign."""
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(np.array([168, 184, 196], np.float32) * (1.05 - 0.2 * y), (H, W, 3)).copy()
    img[:, 200:440] = np.array([70, 74, 78], np.float32) * (1.1 - 0.4 * y[:, :, 0:1])  # corridor
    cv2.rectangle(img, (188, 30), (452, 400), (60, 70, 90), 12)  # door frame
    cv2.rectangle(img, (392, 40), (446, 395), (96, 118, 140), -1)  # open door leaf
    floor = np.array([120, 124, 128], np.float32)
    img[400:] = floor
    for x in range(-400, W + 400, 80):
        cv2.line(img, (W // 2 + (x - W // 2) // 4, 400), (x, H), (100, 104, 108), 2)
    for yy in (420, 445, 475):
        cv2.line(img, (0, yy), (W, yy), (104, 108, 112), 2)
    img8 = np.clip(img, 0, 255).astype(np.uint8)
    cv2.rectangle(img8, (30, 60), (160, 130), (235, 235, 235), -1)
    cv2.putText(img8, "ENTRANCE", (42, 90), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (40, 40, 160), 2, cv2.LINE_AA)
    cv2.putText(img8, "masks please", (42, 118), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
    img = img8.astype(np.float32)
    img += cv2.GaussianBlur(rng.normal(0, 4, (H, W)).astype(np.float32), (0, 0), 1.5)[..., None]
    return img


def build_plan(seed: int = SEED, detector: FaceDetector | None = None, only: set[int] | None = None) -> Plan:
    """Everything the frames need: sources scaled, masks drawn, timings. Deterministic in `seed`.

    only: load the sources of these appearance ids alone (the others keep their timing but cannot be drawn);
    a quick way for tests to re-render some frames.
    """
    # the faces found at the settings the committed video was made with place the masks, so the video stays
    # the same when config.toml's [detector] is tuned (`--check` measures the config's detector)
    detector = detector or FaceDetector(FIRST_DEMO_DETECTOR)
    rng = np.random.default_rng(seed)
    plan = Plan(seed, [], _background(rng))
    photos: dict[str, tuple[np.ndarray, Face]] = {}
    start = GAP
    for k, (source, state, placement, style, side, face_h) in enumerate(CAST):
        app = Appearance(
            k + 1,
            source,
            state,
            placement,
            style,
            side,
            float(face_h),
            start,
            stand_x=float(W / 2 + rng.uniform(-60, 60)),
            seed=int(rng.integers(1 << 30)),
        )
        clip_start = float(rng.random()) if source == "carphone" else 0.0
        if only is not None and app.id not in only:
            pass
        elif source == "carphone":
            if not plan.carphone:
                plan.carphone, plan.carphone_faces = _load_carphone(detector)
            app.clip_offset = int(clip_start * len(plan.carphone))
        else:
            if source not in photos:
                image = cv2.imread(str(HERE / SOURCES[source][0]))
                face = find_face(detector, image)
                if face is None:
                    raise SystemExit(f"no face found in {SOURCES[source][0]}")
                photos[source] = (image, face)
            image, face = _scaled(*photos[source], face_h)
            masked = _draw(image, face, app)
            app.still = (masked, _cutout(image.shape[:2], face), face)
        plan.appearances.append(app)
        start = app.end + 1 + GAP
    return plan


def _draw(image: np.ndarray, face: Face, app: Appearance) -> np.ndarray:
    if app.state == "not_wear":
        return image
    return draw_mask(
        image,
        face.landmarks,
        face.box,
        app.state,
        np.random.default_rng(app.seed),
        style=MaskStyle.named(app.style),
        placement=app.placement,
    )


# --- frames -----------------------------------------------------------------------------------------------


def _ease(t: float) -> float:
    return t * t * (3 - 2 * t)


def _pose(app: Appearance, k: int, face: Face) -> np.ndarray:
    """2x3 affine from the source (scaled) image to the frame at local frame k of the appearance."""
    sway = np.sin(2 * np.pi * k / 40 + app.seed % 7)
    scale = 1.0 + 0.05 * k / (ENTER + STAND + LEAVE)  # walking slowly towards the camera
    angle = 3.0 * sway
    off = W / 2 + 2.0 * face.width  # far enough to be out of the frame
    sign = -1 if app.side == "left" else 1
    if k < ENTER:
        x = app.stand_x + sign * off * (1 - _ease(k / ENTER))
    elif k < ENTER + STAND:
        x = app.stand_x + 12 * sway
    else:
        x = app.stand_x + 12 * sway - sign * off * _ease((k - ENTER - STAND + 1) / LEAVE)
    y = 0.4 * H + 4 * np.cos(2 * np.pi * k / 20)  # a step's bob
    cx, cy = face.center
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, scale)
    m[:, 2] += np.array([x - cx, y - cy])
    return m


def _source_at(plan: Plan, app: Appearance, k: int) -> tuple[np.ndarray, np.ndarray, Face, Face]:
    """(image, alpha, anchor, face): the source at local frame k; the pose moves the anchor, the face may
    move inside it (the clip's own motion)."""
    if app.still is not None:
        image, alpha, face = app.still
        return image, alpha, face, face
    if not plan.carphone:
        raise ValueError(f"appearance {app.id} was not loaded (build_plan's `only`)")
    n = len(plan.carphone)
    j = int(app.clip_offset + k * 29.97 / FPS) % (2 * n - 2)
    j = j if j < n else 2 * n - 2 - j  # ping-pong through the 4 s clip
    ref = plan.carphone_faces[app.clip_offset]
    s = app.face_height / ref.height
    frame = cv2.resize(plan.carphone[j], None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
    face = plan.carphone_faces[j]
    face = Face(tuple(v * s for v in face.box), 1.0, face.landmarks * s)
    ref_s = Face(tuple(v * s for v in ref.box), 1.0, ref.landmarks * s)
    return _draw(frame, face, app), _cutout(frame.shape[:2], ref_s), ref_s, face


def face_box_in_frame(m: np.ndarray, face: Face) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = face.box
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x2, y2, 1], [x1, y2, 1]]) @ m.T
    return (
        float(corners[:, 0].min()),
        float(corners[:, 1].min()),
        float(corners[:, 0].max()),
        float(corners[:, 1].max()),
    )


def render_frame(plan: Plan, i: int) -> np.ndarray:
    """Frame i (BGR uint8 HxW), a pure function of the plan and i."""
    rng = np.random.default_rng([plan.seed, i])
    light = 1.0 + 0.04 * np.sin(2 * np.pi * i / 90) + rng.normal(0, 0.006)
    frame = plan.background * light
    for app in plan.appearances:
        if app.start <= i <= app.end:
            image, alpha, anchor, _ = _source_at(plan, app, i - app.start)
            m = _pose(app, i - app.start, anchor)
            layer = cv2.warpAffine(image, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            a = cv2.warpAffine(alpha, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[
                ..., None
            ]
            frame = frame * (1 - a) + layer.astype(np.float32) * light * a
    frame += rng.normal(0, NOISE, frame.shape).astype(np.float32)
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def truth(plan: Plan) -> dict:
    people = []
    for app in plan.appearances:
        boxes = []
        for k in range(app.end - app.start + 1):
            _, _, anchor, face = _source_at(plan, app, k)
            x1, y1, x2, y2 = face_box_in_frame(_pose(app, k, anchor), face)
            if x1 >= 0 and y1 >= 0 and x2 <= W - 1 and y2 <= H - 1:
                boxes.append([app.start + k, round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)])
        file, gender, age, note = SOURCES[app.source]
        people.append(
            {
                "id": app.id,
                "source": file,
                "source_note": note,
                "mask": app.state,
                "placement": app.placement if app.state != "not_wear" else None,
                "mask_style": app.style,
                "gender": gender,
                "age": AGE_NAMES[age_group(age)],
                "age_years_estimate": age,
                "first_frame": app.start,
                "last_frame": app.end,
                "first_in_view": boxes[0][0],
                "last_in_view": boxes[-1][0],
                "face_boxes": boxes,
            }
        )
    return {
        "video": "entrance.mp4",
        "width": W,
        "height": H,
        "fps": FPS,
        "frames": plan.frames,
        "seed": plan.seed,
        "notes": "first/last_frame: the person is at least partly in the frame; first/last_in_view: the face "
        "box is fully inside the frame; face_boxes: [frame, x1, y1, x2, y2] for those frames.",
        "people": people,
    }


def write_truth(path: Path, doc: dict) -> None:
    """JSON with each face box on one line (the file stays readable and diffs stay small)."""
    text = json.dumps(doc, indent=2)
    text = re.sub(r"\[\s+([^\[\]{}]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    atomic_write_text(path, text + "\n")


def write_video(plan: Plan, path: Path, frames: int | None = None) -> None:
    n = plan.frames if frames is None else min(frames, plan.frames)
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
        if not writer.isOpened():
            raise SystemExit("OpenCV cannot write mp4v video here")
        for i in range(n):
            writer.write(render_frame(plan, i))
        writer.release()


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def detection_rates(video: Path, truth_doc: dict, detector: FaceDetector) -> list[dict]:
    """Per person: share of in-view frames of the written video where MTCNN finds a face on the truth box."""
    want = {row[0]: (p["id"], row[1:]) for p in truth_doc["people"] for row in p["face_boxes"]}
    hits: dict[int, list[int]] = {p["id"]: [0, 0] for p in truth_doc["people"]}
    cap = cv2.VideoCapture(str(video))
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i in want:
            pid, box = want[i]
            found = detector.detect(frame)
            hits[pid][0] += any(_iou(f.box, box) >= 0.3 for f in found)
            hits[pid][1] += 1
        i += 1
    cap.release()
    return [
        {
            "id": p["id"],
            "mask": p["mask"],
            "placement": p["placement"],
            "source": p["source"],
            "detected": hits[p["id"]][0],
            "in_view": hits[p["id"]][1],
            "rate": hits[p["id"]][0] / max(hits[p["id"]][1], 1),
        }
        for p in truth_doc["people"]
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "entrance.mp4")
    ap.add_argument("--truth", type=Path, default=HERE / "entrance_truth.json")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--frames", type=int, default=None, help="write only the first N frames (a quick look)")
    ap.add_argument("--check", action="store_true", help="report MTCNN's detection rate per person")
    args = ap.parse_args(argv)
    plan = build_plan(args.seed)
    write_video(plan, args.out, args.frames)
    doc = truth(plan)
    if args.frames is None:
        write_truth(args.truth, doc)
    print(
        f"{args.out}: {min(args.frames or plan.frames, plan.frames)} frames, {W}x{H} at {FPS} fps, "
        f"{len(doc['people'])} people"
    )
    if args.check:
        detector = create_detector(load_config())
        for r in detection_rates(args.out, doc, detector):
            print(
                f"person {r['id']:2d} {r['mask']:9s} {str(r['placement'] or ''):10s} {r['source']:20s} "
                f"detected in {r['detected']:3d}/{r['in_view']:3d} in-view frames = {r['rate']:.0%}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
