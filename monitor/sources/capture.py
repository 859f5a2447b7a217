"""The capture thread: reads frames so that the pipeline never waits on a camera and a camera never waits on
the pipeline.

- camera / stream (and a file with --realtime, which then behaves like a camera): a one-frame slot holds
  the newest frame; a frame the consumer did not take in time is overwritten and counted as dropped, so
  latency stays at one frame however slow the consumer is.
- file (default): every frame is handed over in order through a bounded queue, as fast as it is consumed.
- a live source that fails mid-run is reopened with exponential back-off while `status` says so (with
  several sources, also one that is down when the monitor starts).
- `pause(True)` drops every frame it reads until `pause(False)` (the device keeps being read, so a camera or
  stream stays connected, and a file keeps playing); the link says `paused` meanwhile.
The device is opened through an injectable `opener` (default: its monitor.sources.kinds row's), so tests can
drive the whole path with a fake camera.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from engines.errors import UserError
from engines.secrets import redact_url
from monitor.inference.timing import StageTimer
from monitor.sources.kinds import Device, Opener, SourceSpec, open_cv, open_error
from monitor.sources.link import LinkState


@dataclass
class Frame:
    index: int  # frame number in the source (for a live source: frames read, dropped ones included)
    time: float  # the source's clock: position in a file (s); Unix time for a camera or stream
    image: Any  # BGR uint8 HxWx3 (a broken device may hand anything; the pipeline checks)


_END = object()
_FPS_PROP = 5  # cv2.CAP_PROP_FPS, without importing cv2 here


class Capture:
    """Start with `start()` (opens the source, raising one clear UserError if it will not open); take frames
    with `get(timeout)`; `finished` turns true once a file has ended and every frame was taken."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        opener: Opener = open_cv,
        realtime: bool = False,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        timer: StageTimer | None = None,
        queue_size: int = 8,
    ) -> None:
        self.spec = spec
        self.opener = opener
        self.newest_only = spec.live or realtime  # slot semantics (drops) rather than in-order queue
        self.pace = realtime and not spec.live  # sleep to the file's fps
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.timer = timer or StageTimer()
        self.fps = 30.0
        self.dropped = 0
        self.reconnects = 0
        # Back-off survives a reopen that delivers nothing (a server that accepts and then stays silent);
        # it starts over only once the source has given STEADY_FRAMES frames again.
        self._next_delay = reconnect_initial_s
        self._reopened = False
        self._good_reads = 0
        self._status = "starting"
        self.link = LinkState.CONNECTING
        self.paused = False
        self._up_text = "live"  # what the link says when up (shown again on resuming)
        self._set_lock = threading.Lock()  # the capture thread and pause() (MQTT's thread) both set the link
        self._status_log: deque[tuple[LinkState, str]] = deque(
            maxlen=32
        )  # changes not yet taken by status_changes()
        self.error: BaseException | None = None
        self._device: Device | None = None
        self._first: tuple[bool, Any] | None = None  # a file's first read, done in start() (see there)
        self._stop = threading.Event()
        self.down_at_start = False  # a live source started without its device (see start)
        self._ended = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._slot: Frame | None = None
        self._drained = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        # set whenever a frame (or the end) is ready: one consumer waits on it for several captures at once
        self.wake: threading.Event | None = None

    @property
    def status(self) -> str:
        """The link's state in words (the screen and the MQTT status show it); `link` is the state."""
        return self._status

    def _set(self, link: LinkState, text: str) -> None:
        text = redact_url(text)  # shown on the screen, in headless lines and in the MQTT status
        with self._set_lock:
            if link in (LinkState.UP, LinkState.PAUSED):
                self._up_text = text if link is LinkState.UP else self._up_text
                link, text = (LinkState.PAUSED, "paused") if self.paused else (LinkState.UP, self._up_text)
            if text != self._status or link is not self.link:
                self._status, self.link = text, link
                self._status_log.append((link, text))

    def pause(self, paused: bool) -> None:
        """Drop the frames read from now on (True), or hand them over again (False); the link says so."""
        self.paused = paused
        if paused:
            with self._cond:
                self._slot = None  # a frame read before the pause is not detected either
        if self.link in (LinkState.UP, LinkState.PAUSED):
            self._set(LinkState.PAUSED if paused else LinkState.UP, self._up_text)

    def link_changes(self) -> list[tuple[LinkState, str]]:
        """Changes of the link since the last call (the thread may change it faster than a consumer polls)."""
        out = []
        while self._status_log:
            out.append(self._status_log.popleft())
        return out

    def status_changes(self) -> list[str]:
        return [text for _, text in self.link_changes()]

    # --- consumer side ------------------------------------------------------------------------------------
    def start(self, wait_if_down: bool = False) -> Capture:
        """Open the source and start the thread. A source that will not open is one UserError, except a
        live one with `wait_if_down` (one of several doors): the thread then reconnects with back-off, as
        for a source lost mid-run, and the others go on meanwhile."""
        self._device = self._open()
        if self._device is not None and not self.spec.live:
            # OpenCV "opens" many non-video files and then reads nothing: such a file is an error, not an
            # empty run
            self._first = _safe_read(self._device)
            if not self._first[0]:
                _safe_release(self._device)
                self._device = None
        if self._device is None and not (wait_if_down and self.spec.live):
            raise open_error(self.spec)
        if self._device is None:  # read() of no device fails at once, and the loop starts reconnecting
            self.down_at_start = True
            self._thread.start()
            return self
        fps = _safe_get(self._device, _FPS_PROP)
        self.fps = fps if 1.0 <= fps <= 1000.0 else 30.0
        self._set(LinkState.UP, "live" if self.spec.live else "playing")
        self._thread.start()
        return self

    def get(self, timeout: float = 0.1) -> Frame | None:
        """The next frame (in order for a file, the newest for a live source), or None if none came in
        time."""
        if self.newest_only:
            with self._cond:
                if self._slot is None and not self._ended.is_set():
                    self._cond.wait(timeout)
                frame, self._slot = self._slot, None
                return frame
        if self._drained:
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._drained = True
            return None
        return item

    @property
    def finished(self) -> bool:
        """The source has ended and every frame it gave was taken."""
        if self.newest_only:
            with self._cond:
                return self._ended.is_set() and self._slot is None
        return self._drained

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end, wait for it, release the device."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._device is not None and not self._thread.is_alive():
            _safe_release(self._device)
            self._device = None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the thread ----------------------------------------------------------------------------------------
    def _open(self) -> Device | None:
        try:
            dev = self.opener(self.spec)
        except UserError:
            raise
        except Exception:  # an opener that throws is a source that will not open
            return None
        if dev is None or not dev.isOpened():
            if dev is not None:
                _safe_release(dev)
            return None
        return dev

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by the consumer; never a silent dead thread
            self.error = exc
            self._set(LinkState.DOWN, f"capture failed: {exc.__class__.__name__}: {exc}")
        finally:
            self._ended.set()
            if not self.newest_only:
                self._put(_END, force=True)
            with self._cond:
                self._cond.notify_all()
            self._wake()

    def _loop(self) -> None:
        t0 = time.perf_counter()
        index = 0
        while not self._stop.is_set():
            t = time.perf_counter()
            (ok, image), self._first = self._first or _safe_read(self._device), None
            if not ok:
                if self.spec.live and self._reconnect():
                    continue
                if not self.spec.live:
                    self._set(LinkState.ENDED, "ended")
                return
            self.timer.add("capture", (time.perf_counter() - t) * 1000.0)
            self._count_good_read()
            when = time.time() if self.spec.live else index / self.fps
            frame = Frame(index, when, image)
            index += 1
            if self.pace:
                delay = t0 + index / self.fps - time.perf_counter()
                if delay > 0 and self._stop.wait(delay):
                    return
            if self.paused:  # read (the link stays up), not handed over
                continue
            if self.newest_only:
                with self._cond:
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = frame
                    self._cond.notify()
                self._wake()
            elif not self._put(frame):
                return
            else:
                self._wake()

    def _wake(self) -> None:
        if self.wake is not None:
            self.wake.set()

    def _put(self, item: object, force: bool = False) -> bool:
        """Blocking put that still notices stop(); `force` makes room for the end marker."""
        while True:
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                if self._stop.is_set():
                    if not force:
                        return False
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass

    STEADY_FRAMES = 25

    def _count_good_read(self) -> None:
        if self._reopened:  # the first frame after a reopen: that reconnect worked
            self._reopened = False
            self.reconnects += 1
            self._good_reads = 0
        self._good_reads += 1
        if self._good_reads == self.STEADY_FRAMES:
            self._next_delay = self.reconnect_initial_s

    def _reconnect(self) -> bool:
        """Reopen a live source with back-off until it works or stop() is called."""
        _safe_release(self._device)
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            delay = self._next_delay
            self._set(
                LinkState.RECONNECTING,
                f"reconnecting to {self.spec.describe()} (try {attempt}, waiting {delay:.1f} s)",
            )
            if self._stop.wait(delay):
                return False
            self._next_delay = min(max(delay * 2, 0.05), self.reconnect_max_s)
            dev = self._open()
            if dev is not None:
                self._device = dev
                self._reopened = True
                self._set(LinkState.UP, "live (reconnected)")
                return True
        return False


def _safe_read(dev: Device) -> tuple[bool, Any]:
    try:
        return dev.read()
    except Exception:  # a driver that throws is a frame that did not come
        return False, None


def _safe_get(dev: Device, prop: int) -> float:
    try:
        return float(dev.get(prop))
    except Exception:
        return 0.0


def _safe_release(dev: Device | None) -> None:
    if dev is None:
        return
    try:
        dev.release()
    except Exception:
        pass
