"""--save-faces DIR: the crop of each flagged person (0600 files in a 0700 folder; opt-in only)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from engines.errors import UserError
from engines.fileio import PRIVATE_FILE, atomic_write_bytes, private_dir
from monitor.decisions.results import Event, FrameResult
from monitor.outputs.base import Context, NoSink


class FaceSaver:
    """Crops of flagged people, only when the user asked for them (--save-faces DIR): 0600 files in a 0700
    folder."""

    def __init__(self, folder: str | os.PathLike[str], named: bool = True) -> None:
        self.folder = Path(folder)
        self.named = named  # the source's name in file names (several sources)
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
        where = f"{event.source}_" if event.source and self.named else ""
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


class FacesSink(NoSink):
    """--save-faces DIR: the crop of each flagged person; over [save_faces] max_mb the oldest go at once."""

    def __init__(self, saver: FaceSaver, retention, note) -> None:
        self.saver, self.retention, self.note = saver, retention, note

    def frame(self, result: FrameResult) -> None:
        for ev in result.events:  # the crops travel with the frame that flagged them
            if ev.event != "flag" or ev.track_id not in result.crops:
                continue
            before = self.saver.written_bytes
            self.saver.save(ev, result.crops[ev.track_id])
            if self.retention.wrote("--save-faces", self.saver.written_bytes - before):
                for m in self.retention.run("--save-faces"):
                    self.note(m)


def sink_for(ctx: Context) -> FacesSink | None:
    if ctx.options.save_faces is None:
        return None
    return FacesSink(FaceSaver(ctx.options.save_faces, ctx.named), ctx.retention, ctx.note)
