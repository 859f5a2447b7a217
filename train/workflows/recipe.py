"""A data recipe (`mask-train recipe FILE`): the steps that make a training set, said in a TOML file.

A recipe names its sources (data sets on disk), named MTCNN settings, and an ordered list of steps. A step is
one `mask-train` command (import, cut-masks, synth, prepare), its keys the command's flags, or a `select`:
the rows of a labels list whose columns hold given values, sliced by position ("the first 300 bare faces of
the real import's kept list", "the next 600", "only the incorrect rows"), written as a new list.

Paths: "{out}/..." lies under the recipe's output folder, "{NAME}/..." under the source NAME of [sources];
any other relative path is relative to the recipe file's folder (as in config.toml).

Every table is read into a frozen dataclass with the config's checks (engines.config.section_from_dict): a
misspelt key is one line naming the step and the closest valid key. A step is up to date when the stamp
that its last successful run left (under OUT/.recipe/) records the same command and the same inputs (each
file's size and modification time, a folder's files all together) and its outputs are there.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engines.config import ConfigError, section_from_dict
from engines.fileio import atomic_write_json, atomic_write_text


def _k(default: Any, **meta: Any) -> Any:
    """A recipe key with its default and the bounds the config's checks enforce."""
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RecipeHead:
    """[recipe]: the default output folder and the torch threads of the commands that take --threads."""

    out: str = _k("build/recipe")
    threads: int = _k(1, min=0, max=256)


@dataclass(frozen=True)
class Mtcnn:
    """[mtcnn.NAME]: config.toml [detector] keys a step pins with `mtcnn = "NAME"` (only those given)."""

    thresholds: tuple[float, ...] = _k((0.2, 0.6, 0.4), min=0.0, max=1.0, length=3)
    min_face_size: int = _k(20, min=12, max=2000)
    weights: str = _k("")


@dataclass(frozen=True)
class ImportStep:
    """`mask-train import`: a downloaded set into the cache (CACHE/imports/NAME)."""

    run: str = "import"
    data: str = _k("")
    out: str = _k("")
    name: str = _k("")
    labels: str = _k("")
    holdout: float = _k(0.0, min=0.0, max=0.99)
    seed: int = _k(0)
    exclude: tuple[str, ...] = _k(())
    force: bool = _k(False)
    mtcnn: str = _k("")


@dataclass(frozen=True)
class CutMasksStep:
    """`mask-train cut-masks`: a mask bank cut from real masked photos (replaced when the step runs)."""

    run: str = "cut-masks"
    data: str = _k("")
    out: str = _k("")
    only: str = _k("")
    limit: int = _k(0, min=0)
    mtcnn: str = _k("")


@dataclass(frozen=True)
class SynthStep:
    """`mask-train synth`: synthetic masks over real photos (the folder is rebuilt when the step runs)."""

    run: str = "synth"
    faces: str = _k("")
    out: str = _k("")
    labels: str = _k("")
    variants: int = _k(1, min=1)
    seed: int = _k(0)
    textures: str = _k("")
    mask_bank: str = _k("")
    bank_share: float = _k(0.5, min=0.0, max=1.0)
    mtcnn: str = _k("")


@dataclass(frozen=True)
class PrepareStep:
    """`mask-train prepare`: a competition folder's faces into the cache."""

    run: str = "prepare"
    data: str = _k("")
    out: str = _k("")
    eval: bool = _k(True)
    force: bool = _k(False)
    mtcnn: str = _k("")


@dataclass(frozen=True)
class SelectStep:
    """The rows of `list` whose columns hold the `where` values (COLUMN=VALUE; every column must match, a
    column given twice matches either value), from position `skip` on, `take` of them (0: all), into `out`."""

    run: str = "select"
    list: str = _k("")
    out: str = _k("")
    where: tuple[str, ...] = _k(())
    skip: int = _k(0, min=0)
    take: int = _k(0, min=0)


STEPS: dict[str, type] = {
    "import": ImportStep,
    "cut-masks": CutMasksStep,
    "synth": SynthStep,
    "prepare": PrepareStep,
    "select": SelectStep,
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "import": ("data", "out", "name"),
    "cut-masks": ("data", "out"),
    "synth": ("faces", "out"),
    "prepare": ("data", "out"),
    "select": ("list", "out"),
}
# the keys of each command step that are paths (the rest are values)
PATH_KEYS = ("data", "out", "labels", "only", "faces", "textures", "mask_bank", "list")


@dataclass(frozen=True)
class Step:
    """One step, its paths resolved: what it runs, what it reads and what it leaves."""

    number: int
    kind: str
    settings: Any  # one of the STEPS dataclasses, paths absolute
    argv: tuple[str, ...]  # the mask-train command line (a select: empty)
    inputs: tuple[Path, ...]
    outputs: tuple[Path, ...]  # what must exist after a successful run

    def describe(self) -> str:
        """The step in one line: its mask-train command line, or what a select picks (paths shown
        relative to the working folder where that is shorter)."""
        if self.kind == "select":
            s = self.settings
            where = " and ".join(s.where) or "every row"
            rows = (
                f"rows {s.skip + 1}-{s.skip + s.take}"
                if s.take
                else (f"rows {s.skip + 1}-end" if s.skip else "all rows")
            )
            return f"select {where}, {rows} of {_short(s.list)} -> {_short(s.out)}"
        return "mask-train " + " ".join(_quote(_short(a)) for a in self.argv)


@dataclass(frozen=True)
class Recipe:
    path: Path
    out: Path
    threads: int
    steps: tuple[Step, ...]


def _short(arg: str) -> str:
    if not os.path.isabs(arg):
        return arg
    rel = os.path.relpath(arg)
    return rel if len(rel) < len(arg) else arg


def _quote(arg: str) -> str:
    return arg if arg and re.fullmatch(r"[\w./=:@%+,-]+", arg) else json.dumps(arg)


def _suggest(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"


def load_recipe(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Recipe:
    """Read and check a recipe file; `out` (the command's --out) wins over its [recipe] out."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"recipe file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"recipe file {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    where = str(path)
    tables = ("recipe", "sources", "mtcnn", "steps")
    for key in data:
        if key not in tables:
            raise ConfigError(f"{where}: unknown table [{key}]{_suggest(key, tables)}")
    base = path.resolve().parent
    head = section_from_dict(RecipeHead, data.get("recipe", {}), f"{where}: [recipe]")
    out_dir = Path(out).resolve() if out is not None else (base / head.out).resolve()
    sources = data.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) and v for v in sources.values()):
        raise ConfigError(f'{where}: [sources] must be NAME = "folder or file" lines')
    roots = {"out": out_dir, **{k: (base / v).resolve() for k, v in sources.items()}}
    if "out" in sources:
        raise ConfigError(f"{where}: [sources] out: the name 'out' is the output folder; choose another")
    mtcnn_tables = data.get("mtcnn", {})
    if not isinstance(mtcnn_tables, dict):
        raise ConfigError(f"{where}: mtcnn must be tables [mtcnn.NAME]")
    mtcnn = {name: _mtcnn_flags(t, f"{where}: [mtcnn.{name}]") for name, t in mtcnn_tables.items()}
    raw_steps = data.get("steps", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ConfigError(
            f"{where}: no steps; add [[steps]] tables, each with run = one of {', '.join(STEPS)}"
        )
    steps = tuple(
        _step(i, t, f"{where}: [[steps]] #{i}", base, roots, mtcnn, head.threads)
        for i, t in enumerate(raw_steps, 1)
    )
    return Recipe(path=path, out=out_dir, threads=head.threads, steps=steps)


def _mtcnn_flags(table: Any, where: str) -> tuple[str, ...]:
    m = section_from_dict(Mtcnn, table, where)
    flags: list[str] = []
    if "thresholds" in table:
        flags += ["--thresholds", *(f"{t:g}" for t in m.thresholds)]
    if "min_face_size" in table:
        flags += ["--min-face-size", str(m.min_face_size)]
    if "weights" in table:
        flags += ["--detector-weights", m.weights]
    return tuple(flags)


def _resolve(value: str, where: str, base: Path, roots: Mapping[str, Path]) -> str:
    """A recipe path made absolute: {out} or {SOURCE} first, else relative to the recipe's folder."""
    m = re.fullmatch(r"\{([^}]*)\}(.*)", value)
    if m is None:
        if "{" in value:
            raise ConfigError(f"{where} = {value!r}: a {{NAME}} must start the path")
        return str((base / value).resolve())
    name, rest = m.groups()
    if name not in roots:
        raise ConfigError(f"{where} = {value!r}: no source '{name}'{_suggest(name, list(roots))}")
    return str(roots[name]) + rest if rest.startswith("/") or not rest else str(roots[name] / rest)


def _step(
    number: int,
    table: Any,
    where: str,
    base: Path,
    roots: Mapping[str, Path],
    mtcnn: Mapping[str, tuple[str, ...]],
    threads: int,
) -> Step:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    kind = table.get("run")
    if kind not in STEPS:
        raise ConfigError(f"{where}: run = {kind!r} is not a step{_suggest(str(kind), list(STEPS))}")
    s = section_from_dict(STEPS[kind], table, f"{where} ({kind})")
    for key in REQUIRED[kind]:
        if not getattr(s, key):
            raise ConfigError(f"{where} ({kind}): missing key '{key}'")
    resolved = {
        f.name: _resolve(getattr(s, f.name), f"{where} ({kind}).{f.name}", base, roots)
        for f in fields(s)
        if f.name in PATH_KEYS and getattr(s, f.name)
    }
    s = type(s)(**{**{f.name: getattr(s, f.name) for f in fields(s)}, **resolved})
    if getattr(s, "mtcnn", "") and s.mtcnn not in mtcnn:
        raise ConfigError(
            f"{where} ({kind}).mtcnn = {s.mtcnn!r}: no [mtcnn.{s.mtcnn}]{_suggest(s.mtcnn, list(mtcnn))}"
        )
    if kind == "select":
        for w in s.where:
            if "=" not in w or not w.split("=", 1)[0]:
                raise ConfigError(f"{where} (select).where: {w!r} is not COLUMN=VALUE")
    detector = mtcnn.get(getattr(s, "mtcnn", ""), ())
    argv, inputs, outputs = _command(kind, s, detector, threads)
    return Step(number, kind, s, argv, tuple(Path(p) for p in inputs), tuple(Path(p) for p in outputs))


def _command(kind: str, s: Any, detector: tuple[str, ...], threads: int):
    """(mask-train argv, inputs, outputs) of one step."""
    th = ("--threads", str(threads))
    if kind == "import":
        argv = ["import", "--data", s.data, "--out", s.out, "--name", s.name]
        argv += ["--labels", s.labels] if s.labels else []
        argv += ["--holdout", f"{s.holdout:g}"] if s.holdout else []
        argv += ["--seed", str(s.seed)] if s.seed else []
        for e in s.exclude:
            argv += ["--exclude", e]
        argv += ["--force"] if s.force else []
        folder = Path(s.out) / "imports" / s.name
        return [*argv, *th, *detector], [s.data, s.labels], [folder / "kept.csv", folder / "report.json"]
    if kind == "cut-masks":
        argv = ["cut-masks", "--data", s.data, "--out", s.out]
        argv += ["--only", s.only] if s.only else []
        argv += ["--limit", str(s.limit)] if s.limit else []
        return [*argv, "--force", *th, *detector], [s.data, s.only], [Path(s.out) / "bank.json"]
    if kind == "synth":
        argv = ["synth", "--faces", s.faces, "--out", s.out]
        argv += ["--labels", s.labels] if s.labels else []
        argv += ["--variants", str(s.variants)] if s.variants != 1 else []
        argv += ["--seed", str(s.seed)]
        argv += ["--textures", s.textures] if s.textures else []
        argv += ["--mask-bank", s.mask_bank] if s.mask_bank else []
        argv += ["--bank-share", f"{s.bank_share:g}"] if s.mask_bank and s.bank_share != 0.5 else []
        inputs = [s.faces, s.labels, s.textures, s.mask_bank]
        return [*argv, "--force", *detector], inputs, [Path(s.out) / "labels.csv"]
    if kind == "prepare":
        argv = ["prepare", "--data", s.data, "--out", s.out]
        argv += [] if s.eval else ["--no-eval"]
        argv += ["--force"] if s.force else []
        return [*argv, *th, *detector], [s.data], [Path(s.out) / "manifest.csv"]
    return [], [s.list], [s.out]


# --- list selection ----------------------------------------------------------------------------------------


def parse_where(where: Sequence[str]) -> dict[str, set[str]]:
    """["mask=not_wear", "mask=incorrect"] -> {"mask": {"not_wear", "incorrect"}}."""
    out: dict[str, set[str]] = {}
    for w in where:
        column, _, value = w.partition("=")
        out.setdefault(column.strip(), set()).add(value.strip())
    return out


def select_rows(
    rows: Sequence[Mapping[str, str]], where: Mapping[str, set[str]], skip: int = 0, take: int = 0
) -> list[Mapping[str, str]]:
    """The rows whose every `where` column holds one of its values, in order; from position `skip` of those
    on, `take` of them (0: all that remain)."""
    picked = [r for r in rows if all((r.get(c) or "").strip() in values for c, values in where.items())]
    return picked[skip : skip + take if take else None]


def select_list(step: SelectStep) -> tuple[int, int]:
    """Run a select step: read `list`, write the chosen rows (same header) to `out` atomically. Returns
    (rows read, rows written)."""
    src = Path(step.list)
    try:
        text = src.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"select: list {src} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"select: list {src}: cannot read it ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    where = parse_where(step.where)
    for column in where:
        if column not in header:
            raise ConfigError(f"select: {src} has no column '{column}'{_suggest(column, header)}")
    rows = list(reader)
    chosen = select_rows(rows, where, step.skip, step.take)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(chosen)
    Path(step.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(step.out, buf.getvalue())
    return len(rows), len(chosen)


# --- up to date ---------------------------------------------------------------------------------------------


def fingerprint(paths: Sequence[Path]) -> dict[str, Any]:
    """{path: [size, mtime_ns]} of each input file; of a folder, its files' count, total size, newest mtime
    and a digest of their names, sizes and times; a missing path: null."""
    out: dict[str, Any] = {}
    for p in paths:
        if p.is_file():
            st = p.stat()
            out[str(p)] = [st.st_size, st.st_mtime_ns]
        elif p.is_dir():
            digest, count, size, newest = hashlib.sha256(), 0, 0, 0
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    f = Path(root) / name
                    try:
                        st = f.stat()
                    except OSError:
                        continue
                    digest.update(f"{f.relative_to(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                    count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
            out[str(p)] = [count, size, newest, digest.hexdigest()[:16]]
        else:
            out[str(p)] = None
    return out


def stamp_path(out_dir: Path, step: Step) -> Path:
    key = hashlib.sha256("\0".join(map(str, step.outputs)).encode()).hexdigest()[:12]
    return out_dir / ".recipe" / f"{step.kind}-{key}.json"


def _record(step: Step) -> dict[str, Any]:
    command = list(step.argv) or [f"{f.name}={getattr(step.settings, f.name)}" for f in fields(step.settings)]
    return {"command": command, "inputs": fingerprint(step.inputs)}


def up_to_date(out_dir: Path, step: Step) -> bool:
    """Whether the step's last successful run had this command and these inputs, and its outputs exist."""
    if not all(p.exists() for p in step.outputs):
        return False
    try:
        old = json.loads(stamp_path(out_dir, step).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return old == _record(step)


def mark_done(out_dir: Path, step: Step) -> None:
    path = stamp_path(out_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, _record(step))


def reads_from(step: Step, changed: Sequence[Path]) -> bool:
    """Whether one of the step's inputs is, holds or lies in a path an earlier step (re)writes."""
    return any(i == c or i in c.parents or c in i.parents for i in step.inputs for c in changed)


def changes(step: Step) -> list[Path]:
    """What a run of the step rewrites, for the dry run's 'would run' of the steps after it."""
    if step.kind == "import":
        return [step.outputs[0].parent]
    if step.kind in ("cut-masks", "synth"):
        return [Path(step.settings.out)]
    return list(step.outputs)
