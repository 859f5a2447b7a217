"""What a study leaves in its folder: best.toml (the best trial's settings as a whole config that
`mask-train fit --config best.toml` takes unchanged), trials.csv, and two PNG charts drawn with OpenCV
(optimisation history, parameter importances), like the other charts of this project."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import optuna
from optuna.trial import TrialState

from engines.config import with_overrides
from engines.fileio import atomic_write_text
from train.config import Config
from train.measures.plots import GRID, INK, _text, bar_chart, save_png
from train.runfiles import config_toml

BLUE, GREY, RED = (180, 120, 40), (170, 170, 170), (40, 40, 200)


def best_config(base: Config, study: optuna.Study) -> Config | None:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None
    return with_overrides(base, study.best_trial.params)


def write_best(path: Path, base: Config, study: optuna.Study) -> Config | None:
    cfg = best_config(base, study)
    if cfg is None:
        return None
    best = study.best_trial
    head = (
        f"# best trial of study {study.study_name!r}: #{best.number}, validation macro F1 {best.value:.4f}\n"
        + "".join(f"#   {k} = {v!r}\n" for k, v in sorted(best.params.items()))
    )
    atomic_write_text(path, head + config_toml(cfg))
    return cfg


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    names = sorted({k for t in study.get_trials(deepcopy=False) for k in t.params})
    rows = []
    for t in study.get_trials(deepcopy=False):
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": "" if t.value is None else round(t.value, 5),
                "last_reported_f1": "" if last is None else round(last, 5),
                "epochs_reported": len(t.intermediate_values),
                "seconds": t.user_attrs.get("seconds", ""),
                **{n: t.params.get(n, "") for n in names},
                "error": t.user_attrs.get("error", ""),
                "folder": t.user_attrs.get("folder", ""),
            }
        )
    return rows


def write_csv(path: Path, study: optuna.Study) -> None:
    rows = trial_rows(study)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def history_image(study: optuna.Study, width: int = 900, height: int = 420) -> np.ndarray:
    """Each finished trial's value (pruned: its last reported F1, grey) and the best so far (red line)."""
    img = np.full((height, width, 3), 255, np.uint8)
    _text(img, f"{study.study_name}: validation macro F1 per trial", (10, 26), 0.6, thick=2)
    _text(img, "blue: complete, grey: pruned (last F1), red: best so far", (10, 48), 0.45)
    left, right, top, bottom = 60, width - 20, 70, height - 40
    points = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            points.append((t.number, t.value, True))
        elif t.state == TrialState.PRUNED and t.intermediate_values:
            points.append((t.number, t.intermediate_values[max(t.intermediate_values)], False))
    n = max([p[0] for p in points] + [1])
    lo = min([p[1] for p in points] + [0.0])
    hi = max([p[1] for p in points] + [1e-3]) * 1.05

    def xy(num: float, v: float) -> tuple[int, int]:
        x = left + int((right - left) * num / max(n, 1))
        return x, bottom - int((bottom - top) * (v - lo) / max(hi - lo, 1e-9))

    for i in range(5):
        v = lo + (hi - lo) * i / 4
        _, y = xy(0, v)
        cv2.line(img, (left, y), (right, y), GRID, 1)
        _text(img, f"{v:.2f}", (8, y + 4), 0.4)
    _text(img, "trial", ((left + right) // 2 - 15, height - 8), 0.45)
    for num in range(0, n + 1, max(1, n // 10)):
        _text(img, str(num), (xy(num, lo)[0] - 4, bottom + 18), 0.4)
    best, line = None, []
    for num, v, complete in points:
        cv2.circle(img, xy(num, v), 5, BLUE if complete else GREY, -1)
        if complete and (best is None or v > best):
            best = v
        if best is not None:
            line.append(xy(num, best))
    if len(line) > 1:
        cv2.polylines(img, [np.array(line, np.int32)], False, RED, 2, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (right, bottom), INK, 1)
    return img


def importance_image(study: optuna.Study) -> np.ndarray:
    """Importances of the parameters by Optuna's default evaluator (PED-ANOVA: no scikit-learn needed); a
    note where there are too few complete trials to say."""
    title = f"{study.study_name}: parameter importance for validation macro F1 (PED-ANOVA)"
    try:
        with warnings.catch_warnings():  # "too few trials: importances will be equal" is the chart's note
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as exc:
        imp, note = {}, str(exc).splitlines()[0][:100]
    else:
        note = "needs 2 or more complete trials with varied settings"
    if not imp or len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        img = np.full((90, 900, 3), 255, np.uint8)
        _text(img, title, (10, 26), 0.6, thick=2)
        _text(img, f"no importances: {note}", (10, 60), 0.45)
        return img
    return bar_chart(list(imp), [float(v) for v in imp.values()], title)


def write_outputs(out: Path, base: Config, study: optuna.Study) -> Config | None:
    write_csv(out / "trials.csv", study)
    save_png(out / "history.png", history_image(study))
    save_png(out / "importance.png", importance_image(study))
    return write_best(out / "best.toml", base, study)
