"""One kind of error for everything a user can fix, and one place that turns it into a single line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn


class UserError(Exception):
    """A problem with the user's input (file, key, value): shown as one line, exit code 2, no traceback."""

    exit_code = 2


def run_cli(main: Callable[[], int | None], prog: str) -> NoReturn:
    """Run a CLI entry point so that user errors and Ctrl-C never print a traceback."""
    try:
        code = main()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # the reader of our output went away (`| head`): say nothing more, and keep Python from
        # complaining about the unflushed stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    sys.exit(int(code or 0))
