"""`mask-train demo-door`: the whole way back from a door to the model, on a door made for the purpose.

The door is real masked / bare photos (the demo model's held-out groups, never trained on) seen through
one entrance's camera (`door_camera`: a dim grey night image lit from one side, low resolution, noisy),
which the demo model has not met. Its photo groups are split into a fine-tuning part and a held-out part
(a near-duplicate group never straddles). The fine-tuning part goes the user's way: the base model
classifies each face and the crops it keeps by collect's rule are written as a collect folder
(JPEGs + collected.jsonl, as `mask-monitor --collect` writes them), labelled from the ground truth through
the label page's own store (labels.csv), imported with `mask-train import`'s code and fine-tuned with
`fit --init-from`. The held-out part is labelled and imported the same way into a cache of its own, and
both models are scored on it by `evaluate --compare`'s code: the printed numbers are that evaluation.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from engines.collected import COLLECTED_JSONL, CollectedRecord
from engines.errors import UserError
from engines.faces import create_detector, crop_face
from engines.fileio import sha256_file
from engines.formats import load_engine, read_meta
from engines.labels import MASK_NAMES, TASKS, marginals
from train.config import Config
from train.data.importer import find_box, import_dataset, in_holdout
from train.data.prepare import read_image
from train.evaluation.compare import Comparison, compare
from train.evaluation.frames import ListRow, list_rows
from train.label.store import LabelStore
from train.progress import task


@dataclass(frozen=True)
class DoorSettings:
    base: Path  # the demo model's checkpoint (.pt): fine-tuning starts from it
    photos: Path  # labels CSV: file,mask[,...,group] (import's holdout.csv)
    root: Path  # the folder the CSV's paths are relative to
    out: Path  # work folder: collect/, heldout/, caches, run/
    incorrect: Path | None = (
        None  # synth's labels.csv over the same photos: its incorrect masks join the door
    )
    per_state: int = 120  # door faces per mask state at most
    held_out: float = 0.4  # share of photo groups held out of fine-tuning
    max_confidence: float = 1.0  # collect's rule: keep a face whose top mask probability is under this
    epochs: int = 4
    batch_size: int = 16
    lr: float = 3e-4
    seed: int = 0


@dataclass(frozen=True)
class DoorFace:
    file: str
    mask: int
    group: str
    crop: np.ndarray  # crop_face output of the face seen through the door's camera


@dataclass(frozen=True)
class DoorResult:
    faces: int
    tune_faces: int
    collected: int
    held_faces: int
    comparison: Comparison
    base_sha256: str
    parent_sha256: str  # what the fine-tuned model records as its parent
    new_model: Path
    import_counts: dict[str, int]

    def to_dict(self) -> dict:
        return {
            "faces": self.faces,
            "tune_faces": self.tune_faces,
            "collected": self.collected,
            "held_faces": self.held_faces,
            "comparison": self.comparison.to_dict(),
            "base_sha256": self.base_sha256,
            "parent_sha256": self.parent_sha256,
            "new_model": str(self.new_model),
            "import_counts": self.import_counts,
        }


def door_camera(img: np.ndarray, seed: int) -> np.ndarray:
    """One entrance's camera: grey night mode, dim with light from the left, a low-resolution noisy sensor."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR).astype(np.float32) / 255
    ramp = np.linspace(1.0, 0.15, w, dtype=np.float32)[None, :, None]
    out = (grey**2.2) * 0.6 * ramp
    small = cv2.resize(out, (max(w // 6, 8), max(h // 6, 8)), interpolation=cv2.INTER_AREA)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    out = out + rng.normal(0.0, 0.06, (h, w, 1)).astype(np.float32)  # grey noise: one sensor value
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def read_door_list(path: Path, root: Path) -> list[ListRow]:
    """(image, its name in the list, mask state, group) per row of a labels CSV."""
    return list_rows(path, root, "; `make demo-data` writes it")


def incorrect_rows(path: Path, real: Sequence[ListRow]) -> list[ListRow]:
    """The incorrect masks of a flat `synth` set drawn over the list's bare photos, each in the group of the
    photo it was drawn on (synth.json names it), so a person never straddles the split."""
    photos = []
    if (path.parent / "synth.json").is_file():
        photos = json.loads((path.parent / "synth.json").read_text())["settings"].get("photos", [])
    group_of = {"/".join(Path(name).parts[-2:]): group for _, name, _, group in real}
    out = []
    for src, name, mask, group in read_door_list(path, path.parent):
        m = re.fullmatch(r"photo(\d+)", group)
        if mask != 1:
            continue
        if m and int(m.group(1)) < len(photos):
            photo = "/".join(Path(photos[int(m.group(1))]["file"]).parts[-2:])
            group = group_of.get(photo, f"synth:{photo}")
        out.append((src, f"incorrect:{name}", mask, group))
    return out


def pick(rows: Sequence[ListRow], per_state: int) -> list[ListRow]:
    """At most per_state rows of each mask state, in a stable order that mixes the list."""
    key = sorted(rows, key=lambda r: hashlib.sha1(r[1].encode()).hexdigest())
    seen: Counter = Counter()
    chosen = []
    for r in key:
        if seen[r[2]] < per_state:
            seen[r[2]] += 1
            chosen.append(r)
    return chosen


def door_faces(rows: Sequence[ListRow], cfg: Config, show: bool) -> list[DoorFace]:
    """Each photo through the door's camera, cut with crop_face around the face import finds in the photo
    (the demonstration is about the classifier at this door; finding faces is evaluate-frames' business)."""
    detector = create_detector(cfg)
    faces = []
    with task("door faces", len(rows), show) as bar:
        for path, name, mask, group in rows:
            img = read_image(path)
            if img is not None:
                box, _, _ = find_box(img, detector)  # where the face is: the scene's, not the camera's
                seen = door_camera(img, int(hashlib.sha1(name.encode()).hexdigest()[:8], 16))
                faces.append(DoorFace(name, mask, group, crop_face(seen, box, cfg.crop)))
            bar.advance()
    return faces


def split_door(faces: Sequence[DoorFace], share: float, seed: int) -> tuple[list[DoorFace], list[DoorFace]]:
    """(fine-tuning part, held-out part) by photo group: a group is wholly on one side."""
    # salted: the list is itself import's held-out choice (in_holdout with seed 0), which the same key
    # and seed would repeat
    held = [f for f in faces if in_holdout(f"door/{f.group}", share, seed)]
    tune = [f for f in faces if not in_holdout(f"door/{f.group}", share, seed)]
    return tune, held


def _record(
    face: DoorFace, n: int, track: int, probs: np.ndarray, unsure_below: float, sha: str
) -> CollectedRecord:
    """One line of collected.jsonl as the monitor writes it; a photo group is one person, one track (import
    keeps a track on one side of fit's split)."""
    m, g, a = (p.tolist() for p in marginals(probs[None]))
    return CollectedRecord(
        file=f"door_{n:06d}.jpg",
        source="door",
        time=float(n),
        frame=n,
        track=track,
        predicted={t: TASKS[t][int(np.argmax(p))] for t, p in zip(TASKS, (m[0], g[0], a[0]))},
        probs={"mask": m[0], "gender": g[0], "age": a[0]},
        reason="uncertain" if float(np.max(m[0])) < unsure_below else "confident",
        model_sha256=sha,
    )


def collect(
    faces: Sequence[DoorFace], probs: np.ndarray, folder: Path, max_confidence: float, sha: str, cfg: Config
) -> list[tuple[str, DoorFace]]:
    """Write the faces collect's rule keeps (top mask probability under max_confidence) as a collect folder;
    returns (file name, face) of each. `reason` is the monitor's, at collect.max_confidence."""
    folder.mkdir(parents=True, exist_ok=True)
    kept, lines = [], []
    tracks: dict[str, int] = {}
    mask_probs = marginals(probs)[0]
    for n, (face, p, mp) in enumerate(zip(faces, probs, mask_probs)):
        if float(mp.max()) >= max_confidence:
            continue
        track = tracks.setdefault(face.group, len(tracks) + 1)
        rec = _record(face, n, track, p, cfg.collect.max_confidence, sha)
        ok, buf = cv2.imencode(".jpg", face.crop, [cv2.IMWRITE_JPEG_QUALITY, cfg.collect.jpeg_quality])
        if not ok:
            raise UserError(f"{folder}: cannot encode crop {rec.file}")
        (folder / rec.file).write_bytes(buf.tobytes())
        lines.append(rec.to_json())
        kept.append((rec.file, face))
    (folder / COLLECTED_JSONL).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return kept


def label_from_truth(folder: Path, kept: Sequence[tuple[str, DoorFace]]) -> None:
    """labels.csv written by the label page's own store, one key press per crop: the mask state."""
    store = LabelStore(folder)
    for file, face in kept:
        store.set(file, "mask", MASK_NAMES[face.mask])


def fit_config(cfg: Config, s: DoorSettings, cache: Path) -> Config:
    """The fine-tuning run's config: the base model's network and crop, the door's cache, a few epochs."""
    meta = read_meta(s.base)
    if meta.head != "multi":
        raise UserError(
            f"--base {s.base}: a {meta.head}-head model; the door's labels are mask-only (partial) and need "
            f"a multi-head model such as `make demo-model`'s build/demo/run/best.pt"
        )
    known = meta.known_tasks()
    return replace(
        cfg,
        crop=meta.crop,
        model=replace(meta.model_config(cfg.model), pretrained=False),
        data=replace(
            cfg.data, cache_dir=str(cache), num_workers=0, batch_size=s.batch_size, source_weights=()
        ),
        train=replace(
            cfg.train,
            epochs=s.epochs,
            lr=s.lr,
            device="cpu",
            amp=False,
            seed=s.seed,
            best_metric="f1_mask",
            known_tasks=known,
        ),
    )


def labelled_folder(folder: Path, faces, probs, max_confidence: float, sha: str, cfg: Config) -> int:
    """A collect folder of the faces collect's rule keeps, labelled from the truth; how many were kept."""
    kept = collect(faces, probs, folder, max_confidence, sha, cfg)
    if not kept:
        raise UserError(f"{folder}: no face was collected (every top mask probability >= {max_confidence})")
    label_from_truth(folder, kept)
    return len(kept)


def run_door(cfg: Config, s: DoorSettings, show: bool = True) -> DoorResult:
    """Door -> collect -> label -> import -> fine-tune -> before / after on the held-out faces."""
    # torch comes with it: not at the top, since `mask-train --help` imports this module
    from train.fitting import session

    for sub in ("collect", "heldout", "cache", "heldout-cache", "run"):
        if (s.out / sub).exists():
            raise UserError(f"{s.out / sub} exists: give another --out or delete {s.out}")
    fcfg = fit_config(cfg, s, s.out / "cache")
    rows = read_door_list(s.photos, s.root)
    rows += incorrect_rows(s.incorrect, rows) if s.incorrect else []
    faces = door_faces(pick(rows, s.per_state), fcfg, show)
    tune, held = split_door(faces, s.held_out, s.seed)
    if not tune or not held:
        raise UserError(f"the door has {len(tune)} faces to fine-tune on and {len(held)} held out: need both")
    sha = sha256_file(s.base)
    base = load_engine(s.base, device="cpu")
    probs = base.classify([f.crop for f in tune], s.batch_size)
    n_collected = labelled_folder(s.out / "collect", tune, probs, s.max_confidence, sha, fcfg)
    report = import_dataset(s.out / "collect", s.out / "cache", fcfg, name="door", show=show)
    held_probs = base.classify([f.crop for f in held], s.batch_size)
    labelled_folder(s.out / "heldout", held, held_probs, float("inf"), sha, fcfg)
    hcfg = replace(fcfg, data=replace(fcfg.data, cache_dir=str(s.out / "heldout-cache")))
    import_dataset(s.out / "heldout", s.out / "heldout-cache", hcfg, name="door_heldout", show=show)
    result = session.fit(fcfg, run_dir=s.out / "run", data_given=False, show=show, init_from=s.base)
    new = result.run_dir / "best.pt"
    comparison = compare(hcfg, str(s.base), str(new), split="all", data_given=False, show=show)
    return DoorResult(
        faces=len(faces),
        tune_faces=len(tune),
        collected=n_collected,
        held_faces=len(held),
        comparison=comparison,
        base_sha256=sha,
        parent_sha256=str(read_meta(new).extra.get("parent_sha256", "")),
        new_model=new,
        import_counts=dict(report.counts),
    )
