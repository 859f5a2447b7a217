"""`mask-train recipe FILE [--out DIR] [--dry-run] [--force]`: run a data recipe's steps in order
(train.workflows.recipe says what a recipe holds). Each command step is that command's own run(), called
here with the flags the recipe gives it; a select step picks rows of a list in Python. A step whose outputs
are up to date with its command and inputs is skipped."""

from __future__ import annotations

import argparse

from engines.errors import UserError
from train.config import Config, config_from_args
from train.progress import console
from train.workflows.recipe import changes, load_recipe, mark_done, reads_from, select_list, up_to_date


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", metavar="FILE", help="the recipe (a TOML file, e.g. samples/demo_data.toml)")
    p.add_argument(
        "--out", metavar="DIR", help="output folder, {out} in the recipe (default: its [recipe] out)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the steps and which would run; run none")
    p.add_argument("--force", action="store_true", help="run every step, up to date or not")


def run(args: argparse.Namespace, cfg: Config) -> int:
    recipe = load_recipe(args.recipe, args.out)
    total = len(recipe.steps)
    console.print(
        f"recipe {recipe.path}: {total} step{'s' if total != 1 else ''} -> {recipe.out}",
        highlight=False,
        soft_wrap=True,
    )
    changed = []
    parser = None
    for step in recipe.steps:
        due = args.force or reads_from(step, changed) or not up_to_date(recipe.out, step)
        state = ("would run" if args.dry_run else "run") if due else "up to date"
        console.print(
            f"[{step.number}/{total}] {state}: {step.describe()}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        if not due:
            continue
        changed += changes(step)
        if args.dry_run:
            continue
        try:
            if step.kind == "select":
                read, written = select_list(step.settings)
                console.print(
                    f"  {written} of {read} rows -> {step.settings.out}", highlight=False, soft_wrap=True
                )
            else:
                parser = parser or _parser()
                code = _run_command(parser, [*step.argv, *(["--config", args.config] if args.config else [])])
                if code:
                    return code
        except UserError as exc:
            named = UserError(f"{recipe.path} step {step.number} ({step.kind}): {exc}")
            named.exit_code = exc.exit_code
            raise named from None
        mark_done(recipe.out, step)
    return 0


def _parser() -> argparse.ArgumentParser:
    from train.cli import build_parser

    return build_parser()


def _run_command(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """One mask-train command, as its command line would run it: its flags parsed, the config with their
    overrides, its run(); its exit status."""
    args = parser.parse_args(argv)
    return int(args._run(args, config_from_args(args)) or 0)
