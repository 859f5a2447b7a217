"""mask-train: the competition's training workflow and the export of model files."""

import os

# albumentations calls the network at import to look for updates; never on a machine at a door.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
