"""`python -m train.launch [torchrun options] COMMAND [flags]`: torchrun for mask-train, without torchrun's
report on a user error.

    python -m train.launch --standalone --nproc_per_node 4 fit --data DIR ...
    (the same as: torchrun --standalone --nproc_per_node 4 -m train fit --data DIR ...)

Under plain torchrun a user error (a bad flag, a cache made from another data folder) ends every rank with
the error's one line and status 2, and then torchrun itself prints a 30-line traceback of its own: its
launcher raises when any rank fails, and nothing a rank does can stop that. Here, when every rank ended with
a user error, that line is all there is and the status is 2; any other failure (a crash, a signal) shows
torchrun's full report, as torchrun would.
"""

from __future__ import annotations

import logging
import signal
import sys

from engines.errors import UserError, run_cli
from train.cli import COMMANDS


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(torchrun's options, the mask-train command and its flags): split at the first command name."""
    for i, word in enumerate(argv):
        if word in COMMANDS:
            return argv[:i], argv[i:]
    raise UserError(f"no mask-train command given (one of: {', '.join(COMMANDS)})")


def launch(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    options, command = split_argv(argv)
    args = parse_args([*options, "-m", "train", *command])
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)  # "failed (exitcode: 2)": the ranks said why in their own line
    try:
        run(args)
    except ChildFailedError as exc:
        _, first = exc.get_first_failure()
        # the other ranks end with the error too, or with torchrun's SIGTERM if they had not met it yet
        codes = {f.exitcode for f in exc.failures.values()} - {-signal.SIGTERM}
        if first.exitcode == UserError.exit_code and codes == {UserError.exit_code}:
            return UserError.exit_code
        elastic.setLevel(level)
        print(exc.format_msg(), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    run_cli(lambda: launch(argv if argv is not None else sys.argv[1:]), "mask-train")


if __name__ == "__main__":
    main()
