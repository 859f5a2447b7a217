"""The documentation site: the configuration reference generated from the config schema covers every key,
`mkdocs build --strict` succeeds, and the README's commands are the ones the site and CI run."""

from __future__ import annotations

import dataclasses
import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engines import config as schema
from monitor import config as monitor_config
from train import config as train_config

REPO = Path(__file__).resolve().parent.parent


def _hook():
    """docs/hooks/config_reference.py, the hook mkdocs.yml names (docs/ is no package)."""
    name = "docs_hooks_config_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "docs/hooks/config_reference.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def reference() -> dict[str, str]:
    """The generated reference, split into its sections: table name -> that section's Markdown."""
    text = _hook().render()
    parts = re.split(r"^## `\[\[?(\w+)\]\]?`$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_reference_has_every_key_of_every_config_dataclass(reference):
    tables = {**schema.tables_of(monitor_config.Config), **schema.tables_of(train_config.Config)}
    assert set(reference) == set(tables)
    for name, cls in tables.items():
        for f in dataclasses.fields(cls):
            assert f"\n| `{f.name}` |" in reference[name], f"[{name}] {f.name} is missing from the reference"


def test_the_reference_gives_defaults_types_bounds_choices_and_comments(reference):
    rows = {
        line.split("|")[1].strip(" `"): line
        for line in reference["detector"].splitlines()
        if line.startswith("| `")
    }
    assert "`[0.2, 0.6, 0.4]`" in rows["thresholds"] and "3 x float" in rows["thresholds"]
    assert "0 to 1" in rows["thresholds"] and "P-Net, R-Net, O-Net" in rows["thresholds"]
    # a comment that goes on over indented lines is kept whole
    assert "97.9% at 0.1 for 24% (42%)" in rows["thresholds"]
    assert '`"auto"`, `"cpu"`, `"cuda"`' in rows["device"]
    assert "a path" in rows["weights"]
    # a long default goes under its table, every entry of it
    assert "| `space` | (below) |" in reference["tune"]
    for entry in train_config.TuneConfig().space:
        assert f'"{entry}"' in reference["tune"]
    # choices a program reads from its own table: the losses of LOSSES, the source kinds of SOURCES
    from monitor.sources.kinds import SOURCES
    from train.fitting.losses import LOSSES

    assert all(f'`"{name}"`' in reference["train"] for name in LOSSES)
    assert all(f'`"{kind}"`' in reference["sources"] for kind in SOURCES)


def test_the_toml_reader_keeps_comments_where_tomllib_drops_them():
    hook = _hook()
    text = (
        "# the file's heading\n"
        "[a]\n"
        "# about the table\n"
        'x = "#1"   # a hash in a string is no comment\n'
        "y = [1,\n"
        "     2]   # inside the array\n"
        "          # and a second line\n"
        "# a paragraph between keys\n"
        "z = 3\n"
        "[[b]]\n"
        "w = true\n"
    )
    a, b = hook.parse_toml_comments(text)
    assert (a.name, a.array, b.name, b.array) == ("a", False, "b", True)
    x, y, note, z = a.parts[1:]
    assert a.parts[0] == "about the table"
    assert (x.name, x.comment) == ("x", ["a hash in a string is no comment"])
    assert y.name == "y" and len(y.lines) == 2
    assert note == "a paragraph between keys" and z.name == "z" and not z.comment


def test_mkdocs_builds_the_site_strictly(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = (site / "configuration.html").read_text()
    assert "config-reference" not in page  # the marker was replaced by the generated tables
    assert "recheck_thresholds" in page and "min_face_height" in page
    assert 'class="mermaid"' in (site / "architecture.html").read_text()
    assert (site / "img" / "live-screen.svg").is_file()


def _fenced_after(text: str, marker: str) -> str:
    block = text.split(marker, 1)[1]
    return re.search(r"```sh\n(.*?)\n```", block, re.S).group(1)


def test_the_readme_test_command_builds_the_docs_and_ci_reads_it():
    awk = re.search(r"cmd=\$\((awk '.*' README\.md)\)", (REPO / ".ci/run").read_text()).group(1)
    cmd = subprocess.run(["bash", "-c", awk], cwd=REPO, capture_output=True, text=True, check=True).stdout
    steps = [s.strip() for s in cmd.strip().split("&&")]
    lint = steps.index(".venv/bin/ruff format --check .")
    assert steps[lint + 1] == ".venv/bin/mkdocs build --strict"  # after the lint, before the tests
    assert steps[-1] == ".venv/bin/python -m pytest"


def test_getting_started_shows_the_readme_commands():
    readme = (REPO / "README.md").read_text()
    page = (REPO / "docs/getting-started.md").read_text()
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        assert f"```sh\n{_fenced_after(readme, marker)}\n```" in page, f"the README's {marker} differs"


def test_the_live_screen_picture_is_of_the_real_dashboard():
    svg = html.unescape((REPO / "docs/img/live-screen.svg").read_text())  # rich writes spaces as &#160;
    assert svg.startswith("<svg") and "\xa0".join(["latest", "flags"]) in svg and "frames/s" in svg
    assert "FLAG" in svg and "samples/entrance.mp4" in svg
    assert "](docs/img/live-screen.svg)" in (REPO / "README.md").read_text()
    assert "](img/live-screen.svg)" in (REPO / "docs/index.md").read_text()


@pytest.mark.slow
def test_the_script_that_draws_the_live_screen_still_runs(tmp_path):
    """docs/make_screen.py drives the real monitor: a move of a module it imports must not go unnoticed."""
    out = tmp_path / "screen.svg"
    r = subprocess.run(
        [sys.executable, "docs/make_screen.py", "--frame", "90", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    svg = html.unescape(out.read_text())
    assert "frames/s" in svg and "compliance" in svg
