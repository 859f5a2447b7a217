"""`mask-train recipe` (train.workflows.recipe, train.commands.recipe): a data recipe run end to end on a few
real photos and two real scenes copied from ../shared, the rows its select steps pick, up-to-date steps
skipped, bad recipes refused in one line, and samples/demo_data.toml saying the Makefile's demo-data."""

from __future__ import annotations

import csv
import os
import shutil

import pytest

from tests.conftest import REPO, SHARED, one_torch_thread
from train.cli import main
from train.workflows.recipe import load_recipe, parse_where, select_rows

REAL = SHARED / "datasets" / "face-mask-real"
SCENES = SHARED / "datasets" / "face-mask-scenes"
MASKED = ("0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg", "0007.jpg")


def code_of(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def rows_of(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- list selection -----------------------------------------------------------------------------------------


def test_select_rows_matches_every_column_and_any_of_a_columns_values_then_slices():
    pairs = "wN tI vN eN tN tI wN tN".split()  # mask letter, split letter per row
    rows = [{"file": f"{i}.jpg", "mask": p[0], "split": p[1]} for i, p in enumerate(pairs)]
    bare = parse_where(["mask=t"])
    assert [r["file"] for r in select_rows(rows, bare)] == ["1.jpg", "4.jpg", "5.jpg", "7.jpg"]
    assert [r["file"] for r in select_rows(rows, bare, take=2)] == ["1.jpg", "4.jpg"]
    assert [r["file"] for r in select_rows(rows, bare, skip=2, take=600)] == ["5.jpg", "7.jpg"]
    assert [r["file"] for r in select_rows(rows, parse_where(["mask=t", "split=I"]))] == ["1.jpg", "5.jpg"]
    either = parse_where(["mask=v", "mask=e"])
    assert either == {"mask": {"v", "e"}}
    assert [r["file"] for r in select_rows(rows, either)] == ["2.jpg", "3.jpg"]
    assert select_rows(rows, {}, skip=7) == [rows[7]]


def _select_recipe(tmp_path, take: int) -> str:
    path = tmp_path / "sel.toml"
    path.write_text(
        "[sources]\nlists = 'lists'\n"
        "[[steps]]\nrun = 'select'\nlist = '{lists}/all.csv'\nwhere = ['mask=not_wear']\n"
        f"take = {take}\nout = '{{out}}/bare.csv'\n"
    )
    return str(path)


def test_a_select_step_runs_once_and_again_when_its_list_or_its_settings_change(tmp_path, capsys):
    (tmp_path / "lists").mkdir()
    src = tmp_path / "lists" / "all.csv"
    src.write_text('file,mask,box\na.jpg,not_wear,\nb.jpg,wear,"1,2,3,4"\nc.jpg,not_wear,"5,6,7,8"\n')
    out = tmp_path / "out"
    argv = ["recipe", _select_recipe(tmp_path, 1), "--out", str(out)]
    assert code_of(argv) == 0
    assert "[1/1] run: select mask=not_wear, rows 1-1" in capsys.readouterr().out
    assert (out / "bare.csv").read_text() == "file,mask,box\na.jpg,not_wear,\n"
    assert code_of(argv) == 0
    assert "[1/1] up to date: select" in capsys.readouterr().out
    assert code_of([*argv, "--force"]) == 0
    assert "[1/1] run: select" in capsys.readouterr().out
    src.write_text('file,mask,box\nc.jpg,not_wear,"5,6,7,8"\na.jpg,not_wear,\n')  # the list changed
    assert code_of(argv) == 0
    assert "[1/1] run: select" in capsys.readouterr().out
    assert (out / "bare.csv").read_text() == 'file,mask,box\nc.jpg,not_wear,"5,6,7,8"\n'
    assert code_of(["recipe", _select_recipe(tmp_path, 2), "--out", str(out)]) == 0  # the step changed
    assert "[1/1] run: select" in capsys.readouterr().out
    assert len(rows_of(out / "bare.csv")) == 2


# --- bad recipes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            "[[steps]]\nrun = 'import'\ndata = 'x'\nout = 'y'\nname = 'n'\nholdot = 0.1\n",
            "did you mean 'holdout'",
        ),
        ("[[steps]]\nrun = 'synt'\n", "did you mean 'synth'"),
        ("[[steps]]\nrun = 'select'\nlist = '{ral}/kept.csv'\nout = 'o.csv'\n", "no source 'ral'"),
        (
            "[[steps]]\nrun = 'select'\nlist = 'kept.csv'\nout = 'o.csv'\nwhere = ['not_wear']\n",
            "COLUMN=VALUE",
        ),
        ("[[steps]]\nrun = 'import'\ndata = 'x'\nout = 'y'\n", "missing key 'name'"),
        ("[[steps]]\nrun = 'synth'\nfaces = 'f'\nout = 'o'\nmtcnn = 'photo'\n", "no [mtcnn.photo]"),
        ("[mtcnn.photos]\nthresholds = [0.5, 0.6]\n[[steps]]\nrun = 'prepare'\n", "must have 3 items"),
        ("[recipes]\nout = 'x'\n", "did you mean 'recipe'"),
        ("[[steps]]\nrun = 'select'\nlist = 'kept.csv'\nout = 'o.csv'\ntake = -1\n", "out of range"),
        ("[[steps]\n", "not valid TOML"),
    ],
)
def test_a_bad_recipe_is_one_line_naming_the_step_and_key(tmp_path, capsys, body, expected):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    assert code_of(["recipe", str(path), "--dry-run"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert expected in err and str(path) in err and len(err.splitlines()) == 1, err
    assert captured.out == ""


def test_a_select_of_a_column_the_list_lacks_names_the_list_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "all.csv").write_text("file,mask\na.jpg,not_wear\n")
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        "[sources]\nlists = 'lists'\n[[steps]]\nrun = 'select'\nlist = '{lists}/all.csv'\n"
        "where = ['masc=not_wear']\nout = '{out}/bare.csv'\n"
    )
    assert code_of(["recipe", str(recipe), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "step 1 (select)" in err and "all.csv has no column 'masc'" in err and "did you mean 'mask'" in err
    assert not (tmp_path / "out" / "bare.csv").exists()


# --- the demo recipe ----------------------------------------------------------------------------------------


def test_the_demo_recipe_parses_and_its_dry_run_lists_the_makefiles_steps(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths are shown relative to the working folder where that is shorter
    recipe = load_recipe(REPO / "samples" / "demo_data.toml", tmp_path)
    assert [s.kind for s in recipe.steps] == [
        "import", "import", "cut-masks", "synth", "prepare", "select", "select", "synth", "import", "select",
        "synth", "select", "import", "synth",
    ]  # fmt: skip
    assert (
        code_of(["recipe", str(REPO / "samples" / "demo_data.toml"), "--out", str(tmp_path), "--dry-run"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    steps = [line.split(": ", 1)[1] for line in lines[1:]]
    assert len(steps) == 14 and all(" would run: " in line for line in lines[1:])
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    photos = '--thresholds 0.5 0.6 0.6 --min-face-size 40 --detector-weights ""'
    real = min(str(REAL.resolve()), os.path.relpath(REAL.resolve()), key=len)
    # the Makefile's demo-data, step by step, with OUT the working folder
    assert (
        steps[0]
        == f"mask-train import --data {real} --out cache --name real --holdout 0.15 --threads 1 {photos}"
    )
    assert "--name scenes --holdout 0.25" in steps[1] and "--thresholds" not in steps[1]
    assert steps[2] == (
        f"mask-train cut-masks --data {real} --out mask-bank --only cache/imports/real/kept.csv "
        f"--limit 700 --force --threads 1 {photos}"
    )
    assert "--variants 40 --seed 0" in steps[3] and "--out synth " in steps[3]
    assert steps[4].startswith("mask-train prepare --data synth --out cache --no-eval")
    assert steps[5] == "select mask=not_wear, rows 1-300 of cache/imports/real/kept.csv -> bare_train.csv"
    assert steps[6] == (
        "select mask=not_wear, rows 1-120 of cache/imports/real/holdout.csv -> bare_holdout.csv"
    )
    assert "--labels bare_train.csv --seed 2 --mask-bank mask-bank" in steps[7]
    assert "--name synthreal --force" in steps[8]
    assert steps[9] == "select mask=not_wear, rows 301-900 of cache/imports/real/kept.csv -> bare_inc.csv"
    assert "--labels bare_inc.csv --seed 4 --mask-bank" in steps[10]
    assert steps[11] == "select mask=incorrect, all rows of synth-inc/labels.csv -> synth-inc/incorrect.csv"
    assert "--name synthinc --labels synth-inc/incorrect.csv --force" in steps[12]
    assert "--out synth-holdout --labels bare_holdout.csv --seed 3 --mask-bank" in steps[13]


def test_the_makefiles_demo_data_is_the_recipe():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ndemo-data:\n", 1)[1].split("\n\n", 1)[0]
    assert "-m train recipe samples/demo_data.toml --out $(BUILD)" in recipe
    assert "grep" not in recipe and "sed" not in recipe


# --- a small recipe end to end ------------------------------------------------------------------------------

SMALL = """
[recipe]
threads = 1
[sources]
real = "real"
scenes = "scenes"
[mtcnn.photos]
thresholds = [0.5, 0.6, 0.6]
min_face_size = 40
weights = ""

[[steps]]
run = "import"
data = "{real}"
out = "{out}/cache"
name = "real"
holdout = 0.2
mtcnn = "photos"

[[steps]]
run = "import"
data = "{scenes}"
out = "{out}/cache"
name = "scenes"

[[steps]]
run = "cut-masks"
data = "{real}"
out = "{out}/bank"
only = "{out}/cache/imports/real/kept.csv"
mtcnn = "photos"

[[steps]]
run = "select"
list = "{out}/cache/imports/real/kept.csv"
where = ["mask=not_wear"]
take = 2
out = "{out}/bare_first.csv"

[[steps]]
run = "select"
list = "{out}/cache/imports/real/kept.csv"
where = ["mask=not_wear"]
skip = 2
take = 2
out = "{out}/bare_next.csv"

[[steps]]
run = "synth"
faces = "{real}"
labels = "{out}/bare_first.csv"
out = "{out}/synth"
seed = 4
mask_bank = "{out}/bank"
mtcnn = "photos"

[[steps]]
run = "select"
list = "{out}/synth/labels.csv"
where = ["mask=incorrect"]
out = "{out}/synth/incorrect.csv"

[[steps]]
run = "import"
data = "{out}/synth"
labels = "{out}/synth/incorrect.csv"
out = "{out}/cache"
name = "synthinc"
force = true
"""


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    if not REAL.is_dir() or not SCENES.is_dir():
        pytest.skip(f"{REAL} or {SCENES} is missing")
    root = tmp_path_factory.mktemp("recipe")
    for kind, names in (("with_mask", MASKED), ("without_mask", [f"{i:04d}.jpg" for i in range(10)])):
        (root / "real" / kind).mkdir(parents=True)
        for name in names:
            shutil.copy(REAL / kind / name, root / "real" / kind / name)
    for sub in ("images", "annotations"):
        (root / "scenes" / sub).mkdir(parents=True)
    for scene in ("maksssksksss1", "maksssksksss10"):
        shutil.copy(SCENES / "images" / f"{scene}.jpg", root / "scenes" / "images")
        shutil.copy(SCENES / "annotations" / f"{scene}.xml", root / "scenes" / "annotations")
    (root / "small.toml").write_text(SMALL)
    argv = ["recipe", str(root / "small.toml"), "--out", str(root / "out")]
    with one_torch_thread():
        first = code_of(argv)
    return root, argv, first


def test_a_small_recipe_runs_every_step_and_its_selects_pick_the_exact_rows(small_run, capsys):
    root, _, code = small_run
    assert code == 0
    out = root / "out"
    kept = rows_of(out / "cache" / "imports" / "real" / "kept.csv")
    bare = [r["file"] for r in kept if r["mask"] == "not_wear"]
    assert len(bare) >= 4  # 10 bare photos, a fifth of their groups held out
    assert [r["file"] for r in rows_of(out / "bare_first.csv")] == bare[:2]
    assert [r["file"] for r in rows_of(out / "bare_next.csv")] == bare[2:4]
    assert (out / "cache" / "imports" / "scenes" / "kept.csv").is_file()
    assert (out / "bank" / "bank.json").is_file()
    made = rows_of(out / "synth" / "labels.csv")
    incorrect = rows_of(out / "synth" / "incorrect.csv")
    assert incorrect and [r["file"] for r in incorrect] == [
        r["file"] for r in made if r["mask"] == "incorrect"
    ]
    assert len(incorrect) < len(made)
    synthinc = rows_of(out / "cache" / "imports" / "synthinc" / "kept.csv")
    assert {r["mask"] for r in synthinc} == {"incorrect"}
    assert len(synthinc) == len(incorrect)


def test_a_second_run_skips_every_step_and_changes_nothing(small_run, capsys):
    root, argv, code = small_run
    assert code == 0
    out = root / "out"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert code_of(argv) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 8 and all(" up to date: " in line for line in lines), lines
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
