"""One kind of error for everything a user can fix, and one place that turns it into a single line."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from engines.secrets import redact_url


class UserError(Exception):
    """A problem with the user's input (file, key, value): shown as one line, exit code 2, no traceback."""

    exit_code = 2


def run_cli(main: Callable[[], int | None], prog: str) -> NoReturn:
    """Run a CLI entry point so that user errors and Ctrl-C never print a traceback, and no error line or
    traceback shows the user or password of an address (engines.secrets)."""
    try:
        code = main()
    except UserError as exc:
        print(f"{prog}: error: {redact_url(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # the reader of our output went away (`| head`): say nothing more, and keep Python from
        # complaining about the unflushed stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:  # a bug: the traceback as Python prints it, with every address redacted
        print(redact_url("".join(traceback.format_exception(exc))), end="", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(int(code or 0))
