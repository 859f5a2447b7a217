"""One look for every long job: a rich progress bar on stderr, tables on stdout."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def make_progress(enabled: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err_console,
        disable=not enabled,
        transient=False,
    )


@contextlib.contextmanager
def task(description: str, total: int | None, enabled: bool = True) -> Iterator[Ticker]:
    """`with task("cropping", n) as t: ... t.advance(1, info="12 no face")`."""
    with make_progress(enabled) as progress:
        tid = progress.add_task(description, total=total, info="")
        yield Ticker(progress, tid)


class Ticker:
    def __init__(self, progress: Progress, task_id) -> None:
        self.progress, self.task_id = progress, task_id

    def advance(self, n: int = 1, info: str | None = None) -> None:
        kw = {"info": info} if info is not None else {}
        self.progress.update(self.task_id, advance=n, **kw)

    def describe(self, description: str) -> None:
        """Name the step now running (a job of several kinds of steps)."""
        self.progress.update(self.task_id, description=description)


@contextlib.contextmanager
def spinner(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr for a job of unknown length:
    `with spinner("Exporting") as status: status("step 2")`."""
    with err_console.status(message, spinner="dots") as st:
        yield lambda msg: st.update(msg)


def print_counts(title: str, counts: dict[str, int]) -> None:
    """A job's counts as a two-column table ("what", "count"), keys sorted, underscores as spaces."""
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in sorted(counts):
        table.add_row(key.replace("_", " "), str(counts[key]))
    console.print(table)
