"""`mask-train eda --data DIR`: what the data holds and what is wrong with it, as rich tables and PNG plots
(train.evaluation.eda lists the checks)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from engines.device import set_torch_threads
from engines.labels import AGE_NAMES, GENDER_NAMES, class_names
from train.config import Config
from train.evaluation import eda
from train.evaluation.eda import cached_face_boxes, model_conflicts, summary, write_report
from train.options import add_engine_device_argument, add_threads_argument
from train.progress import console
from train.runfiles import check_output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", dest="data.data_dir", metavar="DIR", help="competition folder (train/, eval/)")
    p.add_argument(
        "--cache",
        dest="data.cache_dir",
        metavar="CACHE",
        help="prepared cache: its face boxes enable the skin check, its crops the model check",
    )
    p.add_argument(
        "--report", metavar="DIR", help="folder for the PNG plots and eda.json (default: CACHE/eda)"
    )
    p.add_argument(
        "--checkpoint", metavar="MODEL", help="also flag images a model confidently disagrees with"
    )
    add_engine_device_argument(p)
    add_threads_argument(p)


def print_tables(s: dict[str, Any], limit: int = 20) -> None:
    t = Table(title=f"{s['images']} images ({s['readable']} readable), {s['people']} people")
    for col in ("class", "images", "share"):
        t.add_column(col, justify="left" if col == "class" else "right")
    total = max(sum(s["classes"]), 1)
    for c, (name, n) in enumerate(zip(class_names(), s["classes"])):
        t.add_row(f"{c:2d} {name}", str(n), f"{100 * n / total:.1f}%")
    console.print(t)
    p = Table(title="people per gender and age group")
    p.add_column("gender")
    for a in AGE_NAMES:
        p.add_column(a, justify="right")
    for g, row in zip(GENDER_NAMES, s["people_gender_age"]):
        p.add_row(g, *map(str, row))
    console.print(p)
    console.print("image sizes: " + ", ".join(f"{k} x{n}" for k, n in s["sizes"][:8]))
    for title, rows in (
        ("unreadable files", [[k] for k in s["unreadable"]]),
        ("exact duplicates (same bytes)", [[", ".join(g)] for g in s["exact_duplicates"]]),
        ("names that do not parse / other problems", [[f"{x['kind']}: {x['path']}"] for x in s["problems"]]),
        (
            "labels that look inconsistent",
            [[f"{x['check']}: {x['key']}: {x['detail']}"] for x in s["inconsistent"]],
        ),
    ):
        if rows:
            tab = Table(title=f"{title} ({len(rows)})", show_header=False)
            tab.add_column(overflow="fold")
            for r in rows[:limit]:
                tab.add_row(*r)
            console.print(tab)


def run(args: argparse.Namespace, cfg: Config) -> int:
    data_dir = cfg.resolve(cfg.data.data_dir)
    report = check_output_dir(args.report or cfg.resolve(cfg.data.cache_dir) / "eda", "--report")
    set_torch_threads(cfg.train.threads)
    found = eda.collect(cfg, data_dir)
    if args.checkpoint:
        found.inconsistent += model_conflicts(cfg, args.checkpoint)
    s = summary(found)
    plots = write_report(report, s)
    print_tables(s)
    if not cached_face_boxes(cfg, data_dir):
        console.print(
            "note: no prepared cache of this folder: the skin check needs `mask-train prepare` first"
        )
    console.print(f"report: {report} (eda.json, {', '.join(p.name for p in plots)})")
    return 0
