from pathlib import Path

import numpy as np
import pytest

from train.data.cache import Cache, Sample
from train.data.folds import assign_groups, holdout_people, kfold_people
from train.measures.metrics import (
    confusion,
    macro_f1,
    per_class_f1,
    summarize,
    task_confusion,
)

STEM_MASKS = (0, 0, 0, 0, 0, 1, 2)


def fake_people(n: int, seed: int = 0) -> list[Sample]:
    """n people x 7 photos with a realistic imbalance: few people >= 60."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        gender = int(rng.random() < 0.6)
        age = int(rng.choice([20, 45, 62], p=[0.47, 0.45, 0.08]))
        for j, mask in enumerate(STEM_MASKS):
            out.append(Sample(f"p{i}/{j}", Path(f"p{i}_{j}.jpg"), f"p{i}", f"p{i}", gender, age, mask, True))
    return out


def test_kfold_people_never_straddle_and_cover_everyone():
    samples = fake_people(200)
    folds = kfold_people(samples, 5, seed=1)
    assert sum(len(f) for f in folds) == 200
    assert len(set().union(*folds)) == 200  # no person in two folds
    for i, a in enumerate(folds):
        for b in folds[i + 1 :]:
            assert not a & b
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 2


def _spread(samples, parts_of_person, k):
    """Per (gender, age group) stratum: how far each part's number of people is from its fair share."""
    strata = {}
    for s in samples:
        strata[s.person] = (s.gender, s.cls() % 3)
    worst = 0.0
    for stratum in set(strata.values()):
        members = [p for p, st in strata.items() if st == stratum]
        per_part = np.bincount([parts_of_person[p] for p in members], minlength=k)
        worst = max(worst, float(np.abs(per_part - len(members) / k).max()))
    return worst


def test_kfold_is_stratified_by_class():
    samples = fake_people(300, seed=3)
    folds = kfold_people(samples, 5, seed=0)
    ours = {p: i for i, f in enumerate(folds) for p in f}
    # every class (here: every gender x age stratum, each person being 5 + 1 + 1 images of one) gets its
    # fair share of people, up to rounding: the scarce >=60 groups included
    assert _spread(samples, ours, 5) < 1.0
    rng = np.random.default_rng(0)
    people = sorted(ours)
    random_split = dict(zip(people, rng.integers(0, 5, len(people))))
    assert _spread(samples, random_split, 5) > 2.0  # what an unstratified split does


def test_holdout_fraction_and_seed():
    samples = fake_people(100)
    val = holdout_people(samples, 0.2, seed=5)
    assert 17 <= len(val) <= 23
    assert val == holdout_people(samples, 0.2, seed=5)
    assert val != holdout_people(samples, 0.2, seed=6)
    assert holdout_people(samples, 0.0) == set()


def test_assign_groups_respects_weights():
    counts = np.ones((50, 3), np.int64)
    parts = assign_groups(counts, [3, 1], seed=0)
    assert abs((parts == 1).sum() - 12.5) <= 1


def test_folds_of_the_prepared_data_keep_people_whole(prepared):
    _, cache, _ = prepared
    samples = Cache(cache).samples()
    folds = kfold_people(samples, 3, seed=0)
    for s in samples:
        assert sum(s.person in f for f in folds) == 1
    by_fold = [{s.person for s in samples if s.person in f} for f in folds]
    assert all(by_fold)
    # both genders appear in every fold (6 women, 6 men)
    for f in folds:
        assert {s.gender for s in samples if s.person in f} == {0, 1}


def test_kfold_refuses_saved_folds_of_other_people(tmp_path):
    """folds.json is reused only for the same people: one added since would be in no fold, and one removed
    in a fold that scores nobody, and the out-of-fold F1 would leave them out without a word."""
    import json

    from engines.errors import UserError
    from train.fitting.kfold import fold_people

    samples = fake_people(12)
    folds = fold_people(tmp_path, samples, 3, seed=0)
    assert fold_people(tmp_path, samples, 3, seed=5) == folds  # the saved split, reused
    assert json.loads((tmp_path / "folds.json").read_text())["folds"] == [sorted(f) for f in folds]
    more = samples + fake_people(13)[-7:]  # person p12 added
    with pytest.raises(
        UserError,
        match=r"folds.json splits other people .*\(1 person added, e.g. p12\): "
        r"use another --out \(its fold runs",
    ):
        fold_people(tmp_path, more, 3, seed=0)
    fewer = [s for s in samples if s.person != "p3"]
    with pytest.raises(UserError, match=r"\(1 person removed, e.g. p3\)"):
        fold_people(tmp_path, fewer, 3, seed=0)


def test_macro_f1_by_hand():
    t = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    cm = confusion(t, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    f1 = per_class_f1(cm)
    assert f1 == pytest.approx([0.5, 0.8, 2 / 3])
    assert macro_f1(cm) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # classes absent from truth and predictions do not count (scikit-learn's macro average)
    assert macro_f1(confusion(t, p, 18)) == pytest.approx(macro_f1(cm))


def test_task_metrics_fold_the_18_classes():
    t = np.array(
        [0, 6, 12, 4, 17]
    )  # wear/m/<30, incorrect/m/<30, not_wear/m/<30, wear/f/30-59, not_wear/f/>=60
    p = np.array([1, 6, 13, 4, 5])
    cm = confusion(t, p)
    assert task_confusion(cm, "mask").tolist() == [[2, 0, 0], [0, 1, 0], [1, 0, 1]]
    m = summarize(np.eye(18)[p], t)
    assert m["acc"] == pytest.approx(2 / 5)
    assert m["acc_gender"] == pytest.approx(1.0)
    assert m["f1_gender"] == pytest.approx(1.0)
    assert m["n"] == 5 and len(m["per_class_f1"]) == 18 and m["per_class_f1"][2] is None


def test_the_epoch_line_shows_a_dash_for_a_task_no_validation_sample_has():
    from train.fitting.trainer import epoch_line

    row = dict(
        epoch=1,
        train_loss=0.5,
        val_loss=0.2,
        val_acc=0.0,
        val_f1=0.0,
        val_f1_mask=0.95,
        val_f1_gender=0.0,
        val_f1_age=0.0,
        seconds=1.0,
        images_per_s=3.0,
        val_seconds=0.1,
        lr=1e-3,
    )
    partial = epoch_line(row | {"val_support": {"all": 0, "mask": 10, "gender": 0, "age": 0}}, 4, False)
    assert "acc -  F1 - (mask 0.950 gender - age -)" in partial
    full = epoch_line(row | {"val_support": {"all": 10, "mask": 10, "gender": 10, "age": 10}}, 4, False)
    assert "acc 0.000  F1 0.000 (mask 0.950 gender 0.000 age 0.000)" in full
