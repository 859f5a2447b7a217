"""requirements.lock is what the README's two commands install: it must agree with pyproject.toml.

`make lock` rewrites it (uv pip compile); these tests fail when someone edits the dependencies in
pyproject.toml and forgets to, or edits the lock by hand.
"""

from __future__ import annotations

import re
import tomllib

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

LOCK = REPO / "requirements.lock"
HEADER = "#    uv pip compile "
# the environment the README's commands run in (the lock is universal; these pick its rows for it)
ENV = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "os_name": "posix", "platform_python_implementation": "CPython", "extra": ""}  # fmt: skip


def lock_entries() -> list[dict]:
    """Each pinned row: name, version, marker, hashes and the packages it is there for ('via')."""
    entries: list[dict] = []
    for line in LOCK.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line)
        if pin:
            marker = Marker(pin[3]) if pin[3] else None
            entries.append(dict(name=canonicalize_name(pin[1]), version=Version(pin[2]), marker=marker,
                                hashes=[], via=[]))  # fmt: skip
        elif entries and "--hash=sha256:" in line:
            entries[-1]["hashes"].append(line.split("--hash=sha256:")[1].strip(" \\"))
        elif entries and line.strip().startswith("#") and "via" not in line:
            entries[-1]["via"].append(line.strip(" #"))
        elif entries and line.strip().startswith("# via "):
            entries[-1]["via"].append(line.strip()[len("# via ") :])
    return entries


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [Requirement(r) for r in reqs]


def applies(entry: dict) -> bool:
    return entry["marker"] is None or entry["marker"].evaluate(ENV)


def test_every_dependency_is_locked_at_a_version_pyproject_allows():
    rows = [e for e in lock_entries() if applies(e)]
    for req in declared():
        pinned = [e["version"] for e in rows if e["name"] == canonicalize_name(req.name)]
        assert pinned, f"{req.name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        assert all(v in req.specifier for v in pinned), f"{req} but the lock pins {pinned}: run `make lock`"


def test_the_lock_holds_no_direct_dependency_that_pyproject_dropped():
    names = {canonicalize_name(r.name) for r in declared()}
    direct = {
        e["name"] for e in lock_entries() if any("mask-monitor (pyproject.toml)" in v for v in e["via"])
    }
    assert direct == names, f"the lock's direct dependencies differ from pyproject.toml: {direct ^ names}"


def test_every_row_is_pinned_with_hashes():
    entries = lock_entries()
    assert len(entries) > 50
    bare = [e["name"] for e in entries if not e["hashes"]]
    assert not bare, f"rows without --hash (pip --require-hashes refuses them): {bare}"
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for e in entries for h in e["hashes"])


def test_the_lock_was_made_by_the_documented_command():
    header = next(line for line in LOCK.read_text().splitlines() if line.startswith(HEADER))
    makefile = (REPO / "Makefile").read_text()
    assert header[len("#    ") :] in makefile, "requirements.lock's header differs from `make lock`'s command"
    readme = (REPO / "README.md").read_text()
    assert "--require-hashes -r requirements.lock" in readme
