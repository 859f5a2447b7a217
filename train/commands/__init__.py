"""One thin module per `mask-train` command: its arguments, one call into the library rooms, its printing.

No command module imports another; what two commands share lives in the rooms (train.data, train.measures,
train.fitting, train.evaluation, train.workflows, train.export, train.synth, ...). train/cli.py lists them in
its COMMANDS table."""
