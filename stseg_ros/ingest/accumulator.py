"""Fuse a live RGB-D stream into revisits, off the thread that receives it.

The message thread only pairs images and queues the pair (``submit`` never
blocks); a worker thread decodes the images, waits briefly for the camera
pose in the transform buffer, checks the frame and fuses it into the open
revisit's ``FragmentFusion``. When the worker falls behind, new frames are
dropped at the queue and counted, rather than delaying the sensor callbacks.

A revisit opens with ``begin`` (or with the first frame when ``auto_begin``)
and closes with ``end``, or when no frame arrived for ``idle_timeout_s``;
closing hands its ``FusedScan`` to ``on_revisit`` (the mapper).

Every image that reaches the node is accounted to the revisit open when it
arrived (``Arrivals``): paired into a frame (then fused, dropped for a
reason, thinned, or late: stamped before the previous revisit closed),
given up without a partner, or reported lost by the middleware. A caller
that knows what it sent compares that with what arrived (``missing``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from stseg_ros.core.fields import setting
from stseg_ros.core.images import decode_image, decode_label_image
from stseg_ros.ingest.tf_buffer import TfBuffer
from stseg_ros.mapping.drift import DriftConfig, FragmentFusion, FusedScan
from stseg_ros.mapping.frames import RgbdFrame, intrinsics_from_camera_info
from stseg_ros.mapping.fusion import FusionConfig
from stseg_ros.mapping.labels import PENDING, LabelConfig, LabelStats

log = logging.getLogger(__name__)

QUEUE_FULL = "fusion queue full (the worker fell behind)"
IN_FLIGHT_S = 1.0      # after a close, frames arriving this soon were sent before it
KINDS = ("color", "depth")


@dataclass(frozen=True)
class AccumulatorConfig:
    odom_frame: str = "odom"         # frame the revisit is fused in (odometry frame, REP 105)
    camera_frame: str = ""           # camera optical frame; empty: the colour image's frame_id
    queue_frames: int = setting(     # frames waiting for the fusion worker; when full, new ones
        30, low=1)                   # are dropped (counted)
    max_fusion_rate_hz: float = setting(  # fuse at most this many frames per second (a 30 Hz
        15.0, low=0)                 # camera is thinned to 15); 0: every frame
    pose_wait_s: float = setting(    # s a frame waits for its camera transform to arrive before
        0.5, low=0)                  # it is skipped
    pose_tolerance_s: float = setting(  # s, a frame this far before the oldest or after the
        0.02, low=0)                 # newest transform takes that one
    jump_back_s: float = setting(    # s, stamps this far back mean time restarted (a looping
        1.0, above=0)                # bag, a new simulation)
    idle_timeout_s: float = setting(  # s, close an open revisit after this long without frames;
        10.0, low=0)                 # 0: never
    auto_begin: bool = True  # a frame with no revisit open opens one (false: begin_revisit does)
    auto_min_frames: int = setting(  # a revisit a frame opened (auto_begin) that fused fewer
        10, low=0)                   # frames is dropped, not mapped


@dataclass
class RawFrame:
    """A synchronised colour/depth pair as received (images not decoded yet)."""

    stamp_ns: int
    color: object                    # sensor_msgs/Image-like (height, width, step, ...)
    depth: object
    camera_info: object | None       # the latest CameraInfo-like, None if none came yet
    camera_frame: str


@dataclass
class Arrivals:
    """What reached the node while one revisit was open, before fusion."""

    color: int = 0           # colour images received
    depth: int = 0           # depth images received
    unpaired: int = 0        # of those, given up without a partner of the other kind
    lost: int = 0            # images the middleware reported lost on the way
    late: int = 0            # frames of the closed revisit before, arriving after its close
    missing: int = 0         # images the sender said it sent that had not arrived
    labels: int = 0          # label images received (labels.topic)

    def received(self, kind: str) -> int:
        return self.color if kind == "color" else self.depth


@dataclass
class RevisitResult:
    """A closed revisit: its scan and what happened to its frames."""

    revisit: int
    label: str
    scan: FusedScan | None           # None when discarded
    last_stamp_ns: int
    fused: int
    skipped: dict[str, int]          # reason -> frames received but not fused
    thinned: int                     # frames left out on purpose by max_fusion_rate_hz
    arrivals: Arrivals = field(default_factory=Arrivals)
    labels: LabelStats | None = None  # the robot's label images, when labels.topic is set

    @property
    def frames(self) -> int:
        """Colour/depth pairs received: fused + dropped + thinned + late."""
        return self.fused + self.dropped + self.thinned + self.arrivals.late

    @property
    def dropped(self) -> int:
        return sum(self.skipped.values())

    @property
    def overflow(self) -> int:
        """Of the dropped frames, those dropped because the worker fell behind."""
        return self.skipped.get(QUEUE_FULL, 0)


@dataclass
class Closing:
    """A revisit the worker is closing: ``done`` is set once ``result`` is in
    (None if closing failed)."""

    done: threading.Event = field(default_factory=threading.Event)
    result: RevisitResult | None = None

    def outcome(self) -> RevisitResult:
        if self.result is None:
            raise RuntimeError("the revisit could not be closed; see the log")
        return self.result


@dataclass
class _Revisit:
    index: int
    label: str
    fusion: FragmentFusion
    last_stamp_ns: int = -1          # newest frame fused (worker thread)
    newest_ns: int = -1              # newest frame received (message thread)
    first_ns: int = -1               # first frame received
    auto: bool = False               # opened by a frame (auto_begin), not by begin()
    next_fusion_ns: int | None = None  # the rate limiter's next slot
    last_frame_time: float = field(default_factory=time.monotonic)
    dropped_at_queue: int = 0
    thinned: int = 0
    arrivals: Arrivals = field(default_factory=Arrivals)
    # the robot's label images are matched to frames here, by stamp, before any
    # is decoded: those of frames queued for fusion go to the worker, those of
    # frames thinned or dropped at the queue are only counted, the others wait
    queued: deque = field(default_factory=lambda: deque(maxlen=2 * PENDING))
    not_fused: deque = field(default_factory=lambda: deque(maxlen=2 * PENDING))
    waiting_labels: deque = field(default_factory=deque)    # (stamp, image), no frame yet
    labels_not_fused: int = 0
    labels_unmatched: int = 0        # waited for a frame that never came

    def skip(self, stamp_ns: int, reason: str) -> None:
        if self.fusion.stats.skip(reason):
            log.warning("revisit %d: skipping frame %d: %s (further frames skipped for "
                        "this reason are only counted)", self.index, stamp_ns, reason)


class RevisitAccumulator:
    def __init__(self, tf: TfBuffer, on_revisit: Callable[[RevisitResult], None],
                 cfg: AccumulatorConfig | None = None, fusion: FusionConfig | None = None,
                 drift: DriftConfig | None = None,
                 waiting_images: Callable[[], int] | None = None,
                 labels: LabelConfig | None = None) -> None:
        """``waiting_images`` gives up the images still waiting for a partner
        (the pairing queue) and returns how many; a closing revisit counts them
        as unpaired, so none of them pairs into the next revisit. ``labels``:
        how the robot's 2D label images are fused (none without ``topic``)."""
        self.cfg, self.tf, self.on_revisit = cfg or AccumulatorConfig(), tf, on_revisit
        self._waiting_images = waiting_images
        self.fusion_cfg, self.drift_cfg = fusion or FusionConfig(), drift or DriftConfig()
        self.label_cfg = labels
        self.labels_without_revisit = 0    # label images that came while none was open
        self._lock = threading.Lock()
        self._current: _Revisit | None = None
        self._next_index = 0
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0                  # frames in the queue
        self.frames_without_revisit = 0
        self._closed_until_ns = -1         # newest frame stamp of the revisits closed so far
        self._closed_at = -IN_FLIGHT_S     # when the last revisit closed (monotonic)
        self._worker = threading.Thread(target=self._work, name="fusion", daemon=True)
        self._worker.start()

    # --- message thread ---------------------------------------------------------------

    def arrived(self, kind: str) -> None:
        """Count one image of ``kind`` (colour or depth) as it reaches the node."""
        with self._lock:
            if self._current is None:
                return            # a frame it pairs into opens a revisit and counts there
            if kind == "color":
                self._current.arrivals.color += 1
            else:
                self._current.arrivals.depth += 1

    def unpaired(self, images: int) -> None:
        """Count images given up without a partner."""
        if images:
            with self._lock:
                if self._current is not None:
                    self._current.arrivals.unpaired += images

    def lost(self, images: int) -> None:
        """Count images the middleware reported lost."""
        if images:
            with self._lock:
                if self._current is not None:
                    self._current.arrivals.lost += images

    def received(self) -> dict[str, int] | None:
        """Images of each kind (colour, depth, the robot's labels) received while
        the open revisit was open (None: none open)."""
        with self._lock:
            rev = self._current
            if rev is None:
                return None
            return {**{k: rev.arrivals.received(k) for k in KINDS}, "labels": rev.arrivals.labels}

    def submit(self, frame: RawFrame) -> None:
        """Queue one frame for fusion; never blocks."""
        with self._lock:
            rev = self._current
            if rev is not None and self._late(rev, frame.stamp_ns):
                rev.arrivals.late += 1     # belongs to the revisit closed before: fused nowhere
                return
            if rev is None:
                # frames still in flight when a revisit closed do not open another:
                # those stamped before its newest frame (much older stamps do: the
                # clock restarted) and those arriving within IN_FLIGHT_S of the close
                stale = self._before_close(frame.stamp_ns) \
                    or time.monotonic() - self._closed_at < IN_FLIGHT_S
                if not self.cfg.auto_begin or stale:
                    self.frames_without_revisit += 1
                    return
                rev = self._open("")
                rev.auto = True
                rev.arrivals.color += 1                   # this pair's images are its own
                rev.arrivals.depth += 1
            rev.last_frame_time = time.monotonic()
            if rev.newest_ns < 0:
                rev.first_ns = frame.stamp_ns
            rev.newest_ns = max(rev.newest_ns, frame.stamp_ns)
            if self._thin(rev, frame.stamp_ns):
                rev.thinned += 1
                self._left_out(rev, frame.stamp_ns)
                return
            if self._pending >= self.cfg.queue_frames:
                rev.dropped_at_queue += 1
                self._left_out(rev, frame.stamp_ns)
                return
            self._pending += 1
            labels = self._labels_of(rev, frame.stamp_ns)
            rev.queued.append(frame.stamp_ns)
        self._queue.put(("frame", rev, frame))
        for item in labels:
            self._queue.put(("labels", rev, item))

    def _labels_of(self, rev: _Revisit, stamp_ns: int) -> list:
        """The waiting label images of the frame stamped ``stamp_ns`` (taken out)."""
        if not rev.waiting_labels:
            return []
        gap = rev.fusion.labels.cfg.max_gap_s * 1e9
        mine = [item for item in rev.waiting_labels if abs(item[0] - stamp_ns) <= gap]
        for item in mine:
            rev.waiting_labels.remove(item)
        return mine

    def _left_out(self, rev: _Revisit, stamp_ns: int) -> None:
        rev.not_fused.append(stamp_ns)
        rev.labels_not_fused += len(self._labels_of(rev, stamp_ns))

    def submit_labels(self, stamp_ns: int, image) -> None:
        """Take one label image (a ``sensor_msgs/Image`` of per-pixel class ids)
        for the open revisit. Matched to its frame by stamp first: the label
        image of a frame queued for fusion goes to the worker (decoded and
        voted there), that of a thinned frame is counted and left, and one
        whose frame has not come yet waits for it. Never blocks."""
        with self._lock:
            rev = self._current
            if rev is None or rev.fusion.labels is None:
                self.labels_without_revisit += 1
                return
            rev.arrivals.labels += 1
            gap = rev.fusion.labels.cfg.max_gap_s * 1e9
            if any(abs(stamp_ns - s) <= gap for s in rev.not_fused):
                rev.labels_not_fused += 1     # its frame was thinned: not even decoded
                return
            if not any(abs(stamp_ns - s) <= gap for s in rev.queued):
                rev.waiting_labels.append((stamp_ns, image))     # its frame is to come
                if len(rev.waiting_labels) > PENDING:
                    rev.waiting_labels.popleft()
                    rev.labels_unmatched += 1
                return
        self._queue.put(("labels", rev, (stamp_ns, image)))

    def _before_close(self, stamp_ns: int) -> bool:
        """Stamped at most ``jump_back_s`` before the newest frame of the revisits
        closed so far (much older stamps mean the clock restarted)."""
        return 0 <= self._closed_until_ns - stamp_ns <= self.cfg.jump_back_s * 1e9

    def _late(self, rev: _Revisit, stamp_ns: int) -> bool:
        """A frame of the revisit closed before this one, arriving after the close:
        stamped before that revisit's newest frame, and before any frame of this
        one (a bag replayed twice is not late)."""
        return self._before_close(stamp_ns) and (rev.newest_ns < 0 or stamp_ns < rev.first_ns)

    def _thin(self, rev: _Revisit, stamp_ns: int) -> bool:
        """Rate limiter on stamps: one frame per slot of 1 / max_fusion_rate_hz.
        A third of a slot of slack keeps stamp jitter from skipping a slot (30 Hz
        becomes 15 Hz, not 10 Hz); after a pause or a jump back in time the
        slots restart from the frame, so they never pile up into a burst."""
        if not self.cfg.max_fusion_rate_hz:
            return False
        gap = 1e9 / self.cfg.max_fusion_rate_hz
        due, slack = rev.next_fusion_ns, gap / 3
        if due is not None and due - slack - 2 * gap <= stamp_ns < due - slack:
            return True
        on_time = due is not None and stamp_ns <= due + gap
        rev.next_fusion_ns = int((due if on_time else stamp_ns) + gap)
        return False

    def begin(self, label: str = "") -> int:
        """Open a new revisit and return its index; an open one is closed first
        (its frames are still fused, in order, before the new revisit's)."""
        with self._lock:
            self._close_locked(False, None)
            return self._open(label).index

    def close(self, discard: bool = False, on_closed: Callable[[], None] | None = None,
              missing: int = 0) -> Closing | None:
        """Close the open revisit without waiting: once its queued frames are
        fused, the worker hands it to ``on_revisit`` (unless discarded), fills
        in the returned ``Closing`` and calls ``on_closed``. ``missing``: images
        the sender sent for it that never arrived. None if no revisit was open."""
        with self._lock:
            if self._current is not None:
                self._current.arrivals.missing += missing
            return self._close_locked(discard, on_closed)

    def end(self, discard: bool = False, timeout: float = 120.0) -> RevisitResult | None:
        """``close`` and wait for the result (None if no revisit was open)."""
        closing = self.close(discard)
        if closing is None:
            return None
        if not closing.done.wait(timeout):
            raise TimeoutError(f"the revisit was not closed within {timeout} s")
        return closing.outcome()

    def close_if_idle(self) -> bool:
        """Close the open revisit (without waiting) if no frame came for
        ``idle_timeout_s``; True if it did."""
        with self._lock:
            rev = self._current
            if rev is None or self.cfg.idle_timeout_s <= 0 or \
                    time.monotonic() - rev.last_frame_time <= self.cfg.idle_timeout_s:
                return False
            log.info("revisit %d: no frame for %.1f s, closing it", rev.index,
                     self.cfg.idle_timeout_s)
            return self._close_locked(False, None) is not None

    def resume(self) -> None:
        """The node takes frames again after a pause: the open revisit's idle
        time starts now, so the pause does not close it."""
        with self._lock:
            if self._current is not None:
                self._current.last_frame_time = time.monotonic()

    def status(self) -> tuple[int, int, int] | None:
        """(index, fused, dropped) of the open revisit, None if none is open."""
        with self._lock:
            rev = self._current
            if rev is None:
                return None
            return rev.index, rev.fusion.stats.integrated, \
                rev.fusion.stats.dropped + rev.dropped_at_queue

    def shutdown(self) -> None:
        self._queue.put(("stop", None, None))
        self._worker.join(timeout=10.0)

    def _close_locked(self, discard: bool, on_closed) -> Closing | None:
        rev = self._current
        if rev is None:
            return None
        if self._waiting_images is not None:
            rev.arrivals.unpaired += self._waiting_images()
        self._current = None
        self._closed_until_ns = max(self._closed_until_ns, rev.newest_ns)
        self._closed_at = time.monotonic()
        closing = Closing()
        self._queue.put(("end", rev, (discard, closing, on_closed)))
        return closing

    def _open(self, label: str) -> _Revisit:
        rev = _Revisit(self._next_index, label,
                       FragmentFusion(self.fusion_cfg, self.drift_cfg, self.label_cfg))
        self._next_index += 1
        self._current = rev
        log.info("revisit %d%s opened", rev.index, f" ({label})" if label else "")
        return rev

    # --- worker thread ----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item[0] == "stop":
                return
            self._handle(*item)
            # waiting for the next item, the worker holds nothing of a revisit: a
            # closed one's TSDF volume (200 MB reserved) is freed with it
            del item

    def _handle(self, kind: str, rev: _Revisit, payload) -> None:
        if kind == "frame":
            with self._lock:
                self._pending -= 1
            try:
                self._fuse(rev, payload)
            except Exception as err:          # noqa: BLE001 - a bad frame never stops ingest
                rev.skip(payload.stamp_ns, f"fusion failed: {err}")
        elif kind == "labels":
            stamp, image = payload
            try:
                rev.fusion.add_labels(stamp, decode_label_image(image))
            except ValueError as err:
                rev.fusion.add_labels(stamp, None, str(err))
        else:
            discard, closing, on_closed = payload
            try:
                closing.result = self._finish(rev, discard)
            except Exception:                 # noqa: BLE001 - the worker must go on
                log.exception("revisit %d could not be closed", rev.index)
            closing.done.set()
            if on_closed is not None:
                on_closed()

    def _fuse(self, rev: _Revisit, frame: RawFrame) -> None:
        stamp = frame.stamp_ns
        if stamp <= rev.last_stamp_ns:
            if rev.last_stamp_ns - stamp > self.cfg.jump_back_s * 1e9:
                log.warning("revisit %d: time jumped back %.1f s (a looping bag or a "
                            "restarted clock); fusing goes on from the new stamps",
                            rev.index, (rev.last_stamp_ns - stamp) / 1e9)
                rev.last_stamp_ns = -1
                rev.skip(stamp, "time jumped back")
            else:
                rev.skip(stamp, "stamp not after the previous frame's")
            return
        if frame.camera_info is None:
            rev.skip(stamp, "no camera_info received yet")
            return
        intrinsics = intrinsics_from_camera_info(frame.camera_info)
        if intrinsics is None:
            rev.skip(stamp, "camera_info has no intrinsics (K or size is zero)")
            return
        try:
            color, depth = decode_image(frame.color), decode_image(frame.depth)
        except ValueError as err:
            rev.skip(stamp, str(err))
            return
        if color.ndim != 3:
            rev.skip(stamp, f"colour image has encoding {_encoding(frame.color)!r}, "
                            "expected a colour one (rgb8, bgr8, jpeg, ...)")
            return
        if depth.ndim != 2:
            rev.skip(stamp, f"depth image has encoding {_encoding(frame.depth)!r}, "
                            "expected 16UC1 or 32FC1 (raw or compressedDepth)")
            return
        pose = self._pose(frame)
        # fusion checks the frame (camera pose, sizes, valid depth) and counts a skip
        if rev.fusion.integrate(RgbdFrame(stamp, color, depth, intrinsics, pose)):
            rev.last_stamp_ns = stamp

    def _pose(self, frame: RawFrame):
        """odom_from_camera at the frame's stamp, waiting up to ``pose_wait_s`` for
        transforms that have not arrived yet; None if there is none."""
        camera = self.cfg.camera_frame or frame.camera_frame
        tolerance = int(self.cfg.pose_tolerance_s * 1e9)
        deadline = time.monotonic() + self.cfg.pose_wait_s
        while True:
            pose = self.tf.lookup(self.cfg.odom_frame, camera, frame.stamp_ns, tolerance)
            if pose is not None or self.tf.newest_ns >= frame.stamp_ns + tolerance \
                    or time.monotonic() > deadline:
                return pose
            time.sleep(0.005)

    def _finish(self, rev: _Revisit, discard: bool) -> RevisitResult:
        stats = rev.fusion.stats
        if rev.auto and not discard and stats.integrated < self.cfg.auto_min_frames:
            log.warning("revisit %d was opened by a stray frame and fused only %d frames "
                        "(auto_min_frames %d): dropped, not mapped", rev.index,
                        stats.integrated, self.cfg.auto_min_frames)
            discard = True
        if rev.dropped_at_queue:
            stats.skipped[QUEUE_FULL] = rev.dropped_at_queue
        scan = None if discard else rev.fusion.scan()
        if discard and rev.fusion.labels is not None:
            rev.fusion.labels.finish()            # its label images are accounted all the same
        if stats.labels is not None:
            stats.labels.not_fused = rev.labels_not_fused
            stats.labels.unmatched += rev.labels_unmatched + len(rev.waiting_labels)
        result = RevisitResult(rev.index, rev.label, scan, max(rev.last_stamp_ns, 0),
                               stats.integrated, dict(stats.skipped), rev.thinned, rev.arrivals,
                               stats.labels)
        got = rev.arrivals
        log.info("revisit %d closed: %d frames fused, %d dropped%s, %d thinned%s; images "
                 "received: %d colour, %d depth (%d unpaired, %d lost, %d missing, %d frames "
                 "late)", rev.index, result.fused, result.dropped,
                 "".join(f"; {n} {why}" for why, n in result.skipped.items()),
                 result.thinned, " (discarded)" if discard else "", got.color, got.depth,
                 got.unpaired, got.lost, got.missing, got.late)
        if stats.labels is not None:
            log.info("revisit %d: %s", rev.index, stats.labels.note())
        if not discard:
            try:
                self.on_revisit(result)
            except Exception:                     # noqa: BLE001 - the result is still good
                log.exception("revisit %d: handing it on failed", rev.index)
        return result


def _encoding(msg) -> str:
    """An Image's encoding, or a CompressedImage's format."""
    return str(getattr(msg, "encoding", None) or getattr(msg, "format", "?"))
