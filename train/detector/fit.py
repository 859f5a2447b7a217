"""The work of `mask-train fit-detector`: MTCNN's three nets taught masked faces (train.detector.data).

Photos come from `mask-train import` runs (their manifest: each photo's face box and how it was found). A
PASCAL VOC import (street and crowd scenes) is taught as whole scenes instead (import_scenes, scene_frame):
each kept scene with all its faces where the import put them, every annotated box kept out of negatives.
Photos where even the import found no face (how = whole_image) are close-ups from the eyebrows down,
mannequins, or scenes whose faces are too small for the import's MTCNN settings: a close-up is taken (the
photo's width as its face box) where the original MTCNN's most likely box over the photo padded into a frame
covers the photo (IoU >= 0.4), a scene by its largest confident face down to 12 px (a thumbnail looked at
enlarged); others are left out (a whole scene is no face box).

The nets are taught in turn, as MTCNN was: P-Net on 12x12 windows of the frames, then R-Net on the taught
P-Net's candidates, then O-Net on what the taught P-Net and R-Net pass. Each starts from facenet-pytorch's
weights (or an earlier round's file: --init) and learns at a low rate for a few epochs, with as many bare
faces and non-faces as masked faces, so that what it knew stays: the saved file holds all three nets'
weights (engines.faces.FaceDetector loads it with weights_only=True, from [detector] weights)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engines.errors import UserError
from engines.faces import Box, iou
from train.detector.data import (
    NET_NAMES,
    DetPhoto,
    DetScene,
    Samples,
    camera_look,
    clutter_background,
    frame_samples,
    paste_face,
    scene_frame,
    shrink,
)
from train.progress import task

CLOSE_UP_IOU = 0.4
# P-Net sees a whole frame: more jittered faces, and as many negatives again (its hardest windows, random
# squares); the later stages see only what passed the one before
STAGE_SAMPLING = {
    "pnet": {"jitter": 10, "max_negatives": 16},
    "rnet": {"jitter": 6, "max_negatives": 8},
    "onet": {"jitter": 6, "max_negatives": 8},
}


@dataclass(frozen=True)
class FitDetectorOptions:
    frames_per_photo: int = 2
    close_up_repeat: int = 4  # close-ups are few (3% of the photos) and what MTCNN misses most
    scene_repeat: int = 4  # a scene (a VOC import's image) makes this many times frames_per_photo frames
    scene_look: bool = True  # each scene frame as another camera took it (train.detector.data.camera_look)
    scene_boxes: bool = True  # a scene face's box targets: its own box, not the original nets' (face_offsets)
    hard_repeat: int = 1  # a scene with a face the finder misses makes this many times scene_repeat frames
    face_heights: tuple[float, float] = (50.0, 220.0)  # px in the 640x480 frame (evaluate-frames: 60-200)
    max_side: int = 320  # monitor.detect_max_side
    frame_width: int = 640  # scenes.frame_width: where mark_hard looks at a scene, as evaluate-scenes
    match_iou: float = 0.3  # scenes.match_iou: a detection is an annotated face's from this IoU on
    min_face: int = 20  # detector.min_face_size
    epochs: tuple[int, int, int] = (2, 4, 2)  # P-Net, R-Net, O-Net (0: the stage stays facenet-pytorch's)
    lr: float = 1e-4
    batch_size: int = 256
    val_fraction: float = 0.1
    seed: int = 0


def import_photos(cache_dir: str | Path, name: str) -> list[tuple[str, Box, str, int, str]]:
    """(photo path, face box, how, mask state, group) of every sample of the import `name` in a crop cache."""
    report, rows = _read_import(cache_dir, name)
    data = Path(report["data_dir"])
    images: dict[str, Path] = {}
    if report.get("layout") == "voc":  # a box's key names its annotation: the image is the one it names
        from train.data.importer import ImportReport, voc_items

        images = {it.key: it.src for it in voc_items(data, ImportReport(name, "voc"))}
    out = []
    for r in rows:
        key = r["key"].split("/", 1)[1]
        path = images.get(key, data / key)
        box = tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2"))
        out.append((str(path), box, r.get("how", ""), int(r["mask"]), r["person"]))
    return out


def _read_import(cache_dir: str | Path, name: str) -> tuple[dict, list[dict]]:
    """The report and manifest rows of the import `name` in a crop cache; one clear error where it is none."""
    root = Path(cache_dir) / "imports" / name
    try:
        report = json.loads((root / "report.json").read_text(encoding="utf-8"))
        with (root / "manifest.csv").open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, ValueError) as exc:
        raise UserError(f"{root}: not a `mask-train import` of that name ({exc})") from None
    if not rows:
        raise UserError(f"{root}: its manifest.csv lists no samples")
    return report, rows


def import_scenes(cache_dir: str | Path, name: str) -> list[tuple[DetScene, str]] | None:
    """A PASCAL VOC import's scenes, each once with all its taught faces (the import's boxes) and all its
    annotated boxes, and its group; None for an import of another layout. Only the scenes the import kept
    (its manifest): the held-out ones are never taught."""
    from train.data.importer import ImportReport, voc_items

    report, rows = _read_import(cache_dir, name)
    if report.get("layout") != "voc":
        return None
    items = voc_items(Path(report["data_dir"]), ImportReport(name, "voc"))
    image_of = {it.key: it.src for it in items}
    annotated: dict[Path, list[tuple[Box, int]]] = {}
    for it in items:
        annotated.setdefault(it.src, []).append((tuple(float(v) for v in it.box), it.mask))
    faces: dict[Path, list[Box]] = {}
    group: dict[Path, str] = {}
    for r in rows:
        path = image_of.get(r["key"].split("/", 1)[1])
        if path is None:  # the annotation changed since the import: leave it out
            continue
        faces.setdefault(path, []).append(tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")))
        group.setdefault(path, r["person"])
    out = []
    for p, f in faces.items():
        boxes, states = zip(*annotated[p]) if annotated.get(p) else ((), ())
        out.append((DetScene(str(p), tuple(f), tuple(boxes), tuple(states)), group[p]))
    return out


def close_up_box(img: np.ndarray, detector) -> Box | None:
    """A close-up's face box where `detector` (facenet-pytorch's MTCNN, or an earlier fit-detector file's),
    at its most permissive, sees the face filling the photo (padded into a frame); None for scenes and
    anything else. The box is the photo's width and at most 1.2 widths tall, centred (MTCNN's boxes are
    about that shape: the whole of a tall photo would make every square candidate over the face a mere
    part)."""
    from train.data.importer import pad_into_frame

    h, w = img.shape[:2]
    framed, px, py = pad_into_frame(img)
    faces = detector.detect(framed, thresholds=(0.3, 0.0, 0.0))
    whole = (float(px), float(py), float(px + w), float(py + h))
    if not faces or iou(faces[0].box, whole) < CLOSE_UP_IOU:
        return None
    side = min(float(h), 1.2 * w)
    top = (h - side) / 2
    return (0.0, top, float(w), top + side)


def det_photos(
    rows: Sequence[tuple[str, Box, str, int, str]], detector, show: bool = True
) -> tuple[list[DetPhoto], list[str], dict[str, int]]:
    """DetPhotos (face box, other faces) of the import's rows, their groups, and counts of what was kept:
    the import's face; else a close-up's; else a scene's small face (train.data.importer.find_small_face);
    else the photo is left out."""
    from train.data.importer import find_small_face
    from train.data.prepare import read_image

    photos, groups = [], []
    counts = {"face": 0, "close_up": 0, "small_face": 0, "left_out": 0, "unreadable": 0}
    with task("finding faces", len(rows), show) as bar:
        for path, box, how, mask, group in rows:
            bar.advance()
            img = read_image(path)
            if img is None:
                counts["unreadable"] += 1
                continue
            kind = "face"
            if how == "whole_image":
                box, kind = close_up_box(img, detector), "close_up"
                if box is None:
                    box, kind = find_small_face(img, detector), "small_face"
                if box is None:
                    counts["left_out"] += 1
                    continue
            counts[kind] += 1
            others = tuple(f.box for f in detector.detect(img, min_face_size=12) if iou(f.box, box) < 0.3)
            photos.append(DetPhoto(path, box, others, mask, kind == "close_up"))
            groups.append(group)
    return photos, groups, counts


def mark_hard(
    scenes: Sequence[tuple[DetScene, str]], finder, opts: FitDetectorOptions, show: bool
) -> list[tuple[DetScene, str]]:
    """The scenes, each marked hard where the finder (at its own thresholds), looking at the scene as
    evaluate-scenes does (train.evaluation.scenes.detect_in_frame), misses one of its annotated faces at
    least TARGET_MIN_HEIGHT px tall in the frame. make_samples cuts a hard scene hard_repeat times as many
    frames: the faces the nets still miss (turned aside, blurred, half hidden) are otherwise a few among
    many they already find."""
    from train.data.prepare import read_image
    from train.evaluation.scenes import TARGET_MIN_HEIGHT, detect_in_frame

    out = []
    with task("finding hard scenes", len(scenes), show) as bar:
        for sc, group in scenes:
            bar.advance()
            img = read_image(sc.path)
            hard = False
            if img is not None:
                s = opts.frame_width / img.shape[1]
                big = [b for b in sc.others if (b[3] - b[1]) * s >= TARGET_MIN_HEIGHT]
                if big:
                    _, _, dets = detect_in_frame(
                        img, big, finder, opts.frame_width, opts.max_side, opts.match_iou
                    )
                    hard = any(d is None for d in dets)
            out.append((replace(sc, hard=hard), group))
    return out


def make_samples(
    photos: Sequence[DetPhoto | DetScene],
    nets: Sequence,
    stage: str,
    opts: FitDetectorOptions,
    seed: int,
    show: bool,
    backgrounds: Sequence[np.ndarray] = (),
    targets: Sequence | None = None,
) -> Samples:
    """Every photo pasted `frames_per_photo` times (over train.detector.data.clutter_background), every
    scene cut `scene_repeat` times as many frames of its own (train.detector.data.scene_frame), each frame's
    samples for `stage`: candidates from `nets` (as taught so far), box targets from `targets` (the original
    nets). A scene's faces too small for P-Net's pyramid (under 0.8 detector.min_face_size in the copy MTCNN
    sees) are only kept from negatives."""
    import cv2

    from train.data.prepare import read_image

    parts = []
    with task(f"{stage} samples", len(photos), show) as bar:
        for i, ph in enumerate(photos):
            bar.advance()
            img = read_image(ph.path)
            if img is None:
                continue
            scene = isinstance(ph, DetScene)
            repeat = opts.scene_repeat if scene else opts.close_up_repeat if ph.close_up else 1
            if scene and ph.hard:
                repeat *= opts.hard_repeat
            for k in range(opts.frames_per_photo * repeat):
                rng = np.random.default_rng([seed, i, k])
                if scene:
                    frame, faces, others = scene_frame(img, ph, rng)
                    if opts.scene_look:
                        frame, faces, others = camera_look(frame, faces, others, rng)
                else:
                    bg = clutter_background(rng, backgrounds)
                    height = rng.uniform(*opts.face_heights)
                    frame, face, others = paste_face(img, ph.box, ph.others, height, rng, background=bg)
                    faces = [face]
                small, boxes = shrink(frame, [*faces, *others], opts.max_side)
                faces, others = boxes[: len(faces)], boxes[len(faces) :]
                if scene:
                    others += [f for f in faces if f[3] - f[1] < 0.8 * opts.min_face]
                    faces = [f for f in faces if f[3] - f[1] >= 0.8 * opts.min_face]
                rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
                s = frame_samples(
                    rgb,
                    faces,
                    others,
                    nets,
                    stage,
                    rng,
                    targets=targets,
                    min_face=opts.min_face,
                    box_targets=scene and opts.scene_boxes,
                    **STAGE_SAMPLING[stage],
                )
                if s is not None:
                    parts.append(s)
    if not parts:
        raise UserError("no training samples: no photo gave a face candidate")
    return Samples.concat(parts)


def stage_loss(net, stage: str, inputs, labels, regs, marks):
    """MTCNN's multi-task loss: cross-entropy on faces and non-faces (the hardest 70% of each batch, as
    MTCNN's online hard example mining), box regression on faces and parts, landmarks (O-Net) on faces and
    parts against the original net's."""
    import torch

    out = net(inputs)
    n = len(inputs)
    reg, probs = out[0].reshape(n, 4), out[-1].reshape(n, 2)  # P-Net's are 1x1 maps
    cls = labels >= 0
    loss = inputs.new_zeros(())
    if cls.any():
        ce = -torch.log(probs[cls].gather(1, labels[cls, None]).clamp_min(1e-7))[:, 0]

        def hardest(x):
            return x.topk(max(1, int(0.7 * len(x)))).values.mean()

        if stage == "pnet":  # faces and non-faces weigh alike: P-Net's job is to let every face through
            parts = [hardest(ce[labels[cls] == c]) for c in (0, 1) if (labels[cls] == c).any()]
            loss = loss + sum(parts) / len(parts)
        else:
            loss = loss + hardest(ce)
    boxy = labels != 0
    if boxy.any():
        loss = loss + 0.5 * ((reg[boxy] - regs[boxy]) ** 2).sum(1).mean()
        if stage == "onet" and marks is not None:
            loss = loss + 0.5 * ((out[1][boxy] - marks[boxy]) ** 2).sum(1).mean()
    return loss


def train_stage(net, stage: str, data: Samples, opts: FitDetectorOptions, show: bool) -> None:
    import torch

    g = torch.Generator().manual_seed(opts.seed)
    inputs = torch.from_numpy(data.inputs)
    labels = torch.from_numpy(data.labels)
    regs = torch.from_numpy(data.regs)
    marks = torch.from_numpy(data.marks) if data.marks is not None else None
    opt = torch.optim.Adam(net.parameters(), lr=opts.lr)
    net.train()
    steps = (len(labels) + opts.batch_size - 1) // opts.batch_size
    epochs = opts.epochs[NET_NAMES.index(stage)]
    with task(f"training {stage}", epochs * steps, show) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=g)
            for b in range(steps):
                idx = order[b * opts.batch_size : (b + 1) * opts.batch_size]
                x = inputs[idx].float().contiguous(memory_format=torch.channels_last)
                mk = None if marks is None else marks[idx]
                loss = stage_loss(net, stage, x, labels[idx], regs[idx], mk)
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.advance(info=f"loss {loss.item():.3f}")
    net.eval()


def stage_scores(net, data: Samples) -> dict[str, float]:
    """Faces scored over 0.5 / non-faces under 0.5 by a stage on its samples (its own threshold aside)."""
    import torch

    with torch.inference_mode():
        chunks = [torch.from_numpy(data.inputs[i : i + 1024]).float() for i in range(0, len(data), 1024)]
        probs = torch.cat([net(x)[-1].reshape(len(x), 2)[:, 1] for x in chunks]).numpy()
    pos, neg = data.labels == 1, data.labels == 0
    return {
        "faces_kept": float((probs[pos] > 0.5).mean()) if pos.any() else float("nan"),
        "non_faces_dropped": float((probs[neg] <= 0.5).mean()) if neg.any() else float("nan"),
    }


def split_groups(groups: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """A validation mask over the photos: a `fraction` of the groups (near-duplicates stay on one side)."""
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    val = set(rng.choice(names, int(round(fraction * len(names))), replace=False).tolist()) if names else ()
    return np.array([g in val for g in groups], bool)


def write_val_list(path: str | Path, photos: Sequence[tuple[DetPhoto, str]]) -> None:
    """file,mask,group of the validation photos (absolute paths: any --root reads them), atomically. An image
    with several annotated faces (PASCAL VOC) is listed once, with its first face's state: evaluate-frames
    pastes one face of each image."""
    from engines.labels import MASK_NAMES
    from train.data.cache import Cache

    rows: dict[str, dict[str, str]] = {}
    for ph, group in photos:
        file = str(Path(ph.path).resolve())
        if 0 <= ph.mask < len(MASK_NAMES) and file not in rows:
            rows[file] = {"file": file, "mask": MASK_NAMES[ph.mask], "group": group}
    Cache.write_rows(Path(path), list(rows.values()), ["file", "mask", "group"])


def write_val_scenes(path: str | Path, scenes: Sequence[DetScene]) -> None:
    """file,mask,box of every annotated face of the validation scenes (absolute paths: any --data reads
    them), atomically: a list for `mask-train evaluate-scenes --list CSV`."""
    from engines.labels import MASK_NAMES
    from train.data.cache import Cache

    rows = [
        {"file": str(Path(sc.path).resolve()), "mask": MASK_NAMES[m], "box": " ".join(f"{v:g}" for v in b)}
        for sc in scenes
        for b, m in zip(sc.others, sc.states)
        if 0 <= m < len(MASK_NAMES)
    ]
    Cache.write_rows(Path(path), rows, ["file", "mask", "box"])


def fit_detector(
    rows: Sequence[tuple[str, Box, str, int, str]],
    out: str | Path,
    opts: FitDetectorOptions,
    show: bool = True,
    sources: Sequence[str] = (),
    backgrounds: Sequence[np.ndarray] = (),
    finder_weights: str | Path = "",
    val_list: str | Path = "",
    scenes: Sequence[tuple[DetScene, str]] = (),
    init_weights: str | Path = "",
    val_scenes: str | Path = "",
) -> dict:
    """Teach the three nets the photos' faces and the `scenes` (with their groups) as whole frames
    (`finder_weights`: the detector file that places the faces the import found no box for; "" =
    facenet-pytorch's nets); write them (atomically) to `out`; return the meta it carries: counts, and each
    stage's faces kept / non-faces dropped on the validation photos and scenes, before and after.
    `init_weights`: a fit-detector file the nets start from (a further round; the photos' box targets stay
    the original nets'). `val_list`: also write the validation photos as an evaluate-frames list, so that the
    detection path's settings can be chosen on photos no net was taught (not on the held-out ones);
    `val_scenes`: the validation scenes' faces as an evaluate-scenes list."""
    import copy
    from datetime import UTC, datetime

    import torch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    from engines.faces import DETECTOR_FORMAT, FIRST_DEMO_DETECTOR, FaceDetector, load_detector_weights
    from engines.fileio import atomic_path

    # the import's MTCNN settings down to 20-px faces (facenet-pytorch's nets, or a taught file: an earlier
    # round's places many close-ups and thumbnails' faces that facenet-pytorch's nets cannot)
    finder = FaceDetector(replace(FIRST_DEMO_DETECTOR, min_face_size=20, weights=str(finder_weights)))
    photos, groups, counts = det_photos(rows, finder, show)
    if opts.hard_repeat > 1:
        scenes = mark_hard(scenes, finder, opts, show)
    finder.close()
    is_val = split_groups(groups, opts.val_fraction, opts.seed)
    scene_val = split_groups([g for _, g in scenes], opts.val_fraction, opts.seed)
    items = [*photos, *(sc for sc, _ in scenes)]
    held_out = [*is_val, *scene_val]
    train = [p for p, v in zip(items, held_out) if not v]
    val = [p for p, v in zip(items, held_out) if v]
    if not train:
        raise UserError("no photo left to train on")
    if val_list:
        write_val_list(val_list, [(p, g) for p, g, v in zip(photos, groups, is_val) if v])
    if val_scenes:
        write_val_scenes(val_scenes, [sc for (sc, _), v in zip(scenes, scene_val) if v])
    original = tuple(net().eval() for net in (PNet, RNet, ONet))
    nets = dict(zip(NET_NAMES, (copy.deepcopy(n) for n in original)))
    if init_weights:
        for net, state in zip(nets.values(), load_detector_weights(init_weights)):
            net.load_state_dict(state)
    scores: dict[str, dict] = {}
    for i, stage in enumerate(NET_NAMES):  # in turn, as MTCNN was trained: each on the taught ones' windows
        if not opts.epochs[i]:
            continue
        taught = tuple(nets.values())
        data = make_samples(train, taught, stage, opts, opts.seed, show, backgrounds, original)
        held = (
            make_samples(val, taught, stage, opts, opts.seed + 1, show, backgrounds, original)
            if val
            else None
        )
        before = stage_scores(nets[stage], held) if held is not None else {}  # as it starts
        train_stage(nets[stage], stage, data, opts, show)
        after = stage_scores(nets[stage], held) if held is not None else {}
        n_val = 0 if held is None else len(held)
        scores[stage] = {"samples": len(data), "val_samples": n_val, "before": before, "after": after}
    meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "sources": list(sources),
        "backgrounds": len(backgrounds),
        "finder": Path(finder_weights).name if finder_weights else "facenet-pytorch",
        "init": Path(init_weights).name if init_weights else "facenet-pytorch",
        "photos": counts,
        "scenes": len(scenes),
        "train_photos": len(train),
        "val_photos": len(val),
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.__dict__.items()},
        "stages": scores,
    }
    state = {"format": DETECTOR_FORMAT, "meta": meta, **{k: v.state_dict() for k, v in nets.items()}}
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    return meta


def read_backgrounds(path: str | Path, every: int = 10, limit: int = 40) -> list[np.ndarray]:
    """Frames without faces to paste photos over: every `every`-th frame of a video, up to `limit`, or the
    images of a folder."""
    import cv2

    p = Path(path)
    if p.is_dir():
        from train.data.prepare import read_image

        images = [read_image(f) for f in sorted(p.iterdir()) if f.suffix.lower() in (".jpg", ".jpeg", ".png")]
        out = [im for im in images if im is not None][:limit]
    else:
        cap = cv2.VideoCapture(str(p))
        out, i = [], 0
        while len(out) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            if i % every == 0:
                out.append(frame)
            i += 1
        cap.release()
    if not out:
        raise UserError(f"--backgrounds {p}: no frames or images could be read")
    return out
