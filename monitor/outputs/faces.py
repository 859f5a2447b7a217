"""--save-faces DIR: the crop of each flagged person (0600 files in a 0700 folder; opt-in only)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from engines.errors import UserError
from engines.fileio import PRIVATE_FILE, atomic_write_bytes, private_dir
from monitor.decisions.results import Event


class FaceSaver:
    """Crops of flagged people, only when the user asked for them (--save-faces DIR): 0600 files in a 0700
    folder."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.written_bytes = 0  # this run's, for the retention's size cap
        try:
            private_dir(self.folder)
        except OSError as exc:
            raise UserError(
                f"--save-faces {self.folder}: cannot create the folder ({exc.strerror})"
            ) from None
        self.saved = 0
        self.run = time.strftime("%Y%m%d-%H%M%S")

    def save(self, event: Event, crop: np.ndarray) -> Path:
        # the run's start time keeps a reused folder from overwriting the crops of an earlier run
        where = f"{event.source}_" if event.source else ""
        path = (
            self.folder
            / f"{self.run}_{where}f{event.frame:07d}_track{event.track_id}_{event.state.mask_name}.jpg"
        )
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if ok:
            if not self.folder.is_dir():  # removed while running: made again, private
                private_dir(self.folder)
            atomic_write_bytes(path, buf.tobytes(), PRIVATE_FILE)
            self.saved += 1
            self.written_bytes += len(buf)
        return path
