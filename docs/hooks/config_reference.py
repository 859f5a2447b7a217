"""The configuration reference, generated from the config schema when the site is built (so it cannot drift).

A MkDocs hook (mkdocs.yml `hooks:`): in docs/configuration.md the line `<!-- config-reference -->` is
replaced by one section per table of config.toml, in the file's order: each key with its default and comment
from config.toml, and its type, bounds and choices from the frozen dataclasses (engines/config.py's shared
sections, monitor/config.py's and train/config.py's own; the `_f(...)` metadata that validation enforces).
`[[sources]]`, which config.toml leaves out, comes from `SourceConfig` and the comments on its fields.
`render()` is what tests/test_docs.py checks.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- config-reference -->"
PAGE = "configuration.md"
LONG = 60  # a default longer than this (as TOML) is shown under the table, not in it

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclasses.dataclass
class Key:
    name: str
    lines: list[str]  # the key's lines in config.toml (more than one for a multi-line array)
    comment: list[str]


@dataclasses.dataclass
class Section:
    name: str
    array: bool  # [[name]]
    parts: list[Key | str]  # keys and, between them, comment paragraphs of the file, in order


def _split_comment(line: str) -> tuple[str, str]:
    """The code and the comment of one TOML line ('#' inside a string is not a comment)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def parse_toml_comments(text: str) -> list[Section]:
    """config.toml as sections of keys with their comments (tomllib keeps no comments)."""
    sections: list[Section] = []
    note: list[str] = []
    key: Key | None = None
    open_brackets = 0
    for raw in text.splitlines():
        code, comment = _split_comment(raw)
        if open_brackets > 0 and key is not None:  # inside a multi-line value
            key.lines.append(raw)
            open_brackets += code.count("[") - code.count("]")
            continue
        header = re.match(r"^\[(\[)?([A-Za-z_][\w]*)\]?\]\s*$", code)
        if header:
            sections.append(Section(header.group(2), bool(header.group(1)), []))
            note, key = [], None
            continue
        if not sections:
            continue  # the file's own heading comment
        section = sections[-1]
        if not code.strip():
            if comment and raw[:1] == "#":  # a comment paragraph of its own
                if not note:
                    section.parts.append("")
                note.append(comment)
                section.parts[-1] = " ".join(note)
                key = None
            elif comment and key is not None:  # an indented comment: the key's comment goes on
                key.comment.append(comment)
            else:
                note = []
            continue
        m = re.match(r"^([A-Za-z_][\w]*)\s*=", code)
        if m:
            key = Key(m.group(1), [raw], [comment] if comment else [])
            section.parts.append(key)
            note = []
            value = code[m.end() :]
            open_brackets = value.count("[") - value.count("]")
    return sections


def field_comments(cls: type) -> dict[str, str]:
    """The comments on each field of a dataclass's source, above it and on its line (for keys config.toml
    leaves out)."""
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        code, comment = _split_comment(line)
        m = re.match(r"^\s+([a-z_]\w*)\s*:", code)
        if not code.strip() and comment:
            pending.append(comment)
        elif m:
            out[m.group(1)] = " ".join([*pending, comment] if comment else pending)
            pending = []
        else:
            pending = []
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    args = typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        if args and all(a == args[0] for a in args):
            return f"{len(args)} x {_type_name(args[0])}"
    return str(tp).replace("typing.", "")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _allowed(f: dataclasses.Field) -> str:
    meta = f.metadata
    bits = []
    if meta.get("choices"):
        choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]  # a program's table
        bits.append(", ".join(f"`{_toml(c)}`" for c in choices))
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        bits.append(f"{lo:g} to {hi:g}")
    elif lo is not None:
        bits.append(f">= {lo:g}")
    elif hi is not None:
        bits.append(f"<= {hi:g}")
    if meta.get("path"):
        bits.append("a path (relative: to the config file's folder)")
    return "; ".join(bits)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").strip()


def _doc(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(cls.__name__ + "("):  # dataclass's generated signature, not a docstring
        return ""
    return " ".join(line.strip() for line in doc.splitlines())


def _table(cls: type, keys: list[tuple[str, Any, list[str]]], out: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    in_code = field_comments(cls)  # where config.toml has no comment on a key, the dataclass's
    below: list[tuple[str, Any]] = []
    out += ["| key | default | type | allowed | what it does |", "| --- | --- | --- | --- | --- |"]
    for name, default, comment in keys:
        f = fields[name]
        shown = _toml(default)
        if len(shown) > LONG:
            below.append((name, default))
            shown = "(below)"
        else:
            shown = f"`{_cell(shown)}`"
        out.append(
            f"| `{name}` | {shown} | {_type_name(hints[name])} | {_cell(_allowed(f))} | "
            f"{_cell(' '.join(comment) or in_code.get(name, ''))} |"
        )
    for name, default in below:
        items = ",\n".join(f"    {_toml(v)}" for v in default)
        out += ["", "```toml", f"{name} = [\n{items},\n]", "```"]
    out.append("")


def render() -> str:
    """The reference as Markdown: every section and key of config.toml and of the config dataclasses."""
    from engines import config as schema
    from monitor import config as monitor_config
    from train import config as train_config

    sections = {**schema.sections_of(monitor_config.Config), **schema.sections_of(train_config.Config)}
    path = REPO / "config.toml"
    text = path.read_text(encoding="utf-8")
    values = tomllib.loads(text)
    out: list[str] = []
    seen: set[str] = set()
    for section in parse_toml_comments(text):
        cls = sections.get(section.name)
        if cls is None:
            raise ValueError(
                f"config.toml: [{section.name}] has no dataclass in the programs' config modules"
            )
        seen.add(section.name)
        out += [f"## `[{section.name}]`", ""]
        if _doc(cls):
            out += [_doc(cls), ""]
        keys: list[tuple[str, Any, list[str]]] = []
        for part in section.parts:
            if isinstance(part, Key):
                keys.append((part.name, values[section.name][part.name], part.comment))
                continue
            if keys:
                _table(cls, keys, out)
                keys = []
            out += [part, ""]
        if keys:
            _table(cls, keys, out)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values[section.name]]
        if missing:
            raise ValueError(f"config.toml: [{section.name}] lacks {', '.join(missing)}")
    for name in sections.keys() - seen:
        raise ValueError(f"config.toml has no [{name}] table")
    # [[sources]]: none in config.toml by default; its keys from the dataclass
    cls = monitor_config.SourceConfig
    out += [
        "## `[[sources]]`",
        "",
        _doc(cls) + " None by default: the source flags (`--camera`, `--video`, `--url`) name them; "
        "a `[[sources]]` table in the file is used when no source flag is given "
        "(see [Many entrances and a site](sites.md)).",
        "",
    ]
    _table(
        cls,
        [(f.name, f.default, []) for f in dataclasses.fields(cls)],
        out,
    )
    return "\n".join(out).rstrip("\n") + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs hook: put the generated reference in place of the marker on the configuration page."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} lacks the line {MARKER} that the generated reference replaces")
    return markdown.replace(MARKER, render())
