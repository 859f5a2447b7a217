"""Workflows that chain the rooms below them (data, fitting, evaluation, label) into one run: `demo-door`
(door.py: collect, label, fine-tune, compare). Nothing below imports a workflow."""
