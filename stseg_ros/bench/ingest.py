"""Ingest throughput: does the accumulator keep up with a 640x480 RGB-D camera
at 30 Hz while the mapper is busy with the previous revisit?

The accumulator and mapper run as their own processes, as in a deployment.
This process plays the camera: the demo room's recorded frames (640x480
rgb8 + 16UC1, camera_info, /tf, /tf_static) are published at ``rate_hz``
with fresh stamps, looping over the recording, for ``seconds`` per revisit.
Revisit r streams while the mapper registers and segments revisit r-1, so
both compete for the same two cores. Per revisit the accumulator reports
fused, thinned (``max_fusion_rate_hz``), overflowed (queue full: fusion fell
behind) and otherwise dropped frames; the bench adds its CPU load, how long
``end_revisit`` waited for the backlog, and how long the mapper worked.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from stseg_ros.bench.load import cpu_hogs

IMAGE_TOPICS = ("/camera/color/image_raw", "/camera/depth/image_raw")
STREAMED = (*IMAGE_TOPICS, "/camera/color/camera_info", "/tf")


@dataclass
class RevisitFigures:
    revisit: int
    pairs_published: int
    publish_rate_hz: float      # achieved colour + depth pairs per second
    worst_publish_lag_ms: float  # how far the camera fell behind its own schedule
    fused: int
    thinned: int
    overflow: int               # dropped at the queue: fusion fell behind
    dropped: int                # all frames not fused (overflow included)
    received: int               # frames (pairs) the accumulator received
    late: int                   # of those, stamped before the previous revisit closed
    images_unpaired: int        # images given up without a partner
    images_lost: int            # images the middleware reported lost
    images_missing: int         # images published that never reached the accumulator
    gaps: list[str]             # where the accumulator's account does not add up (none)
    end_wait_s: float           # end_revisit: fusing the backlog and extracting the scan
    accumulator_cpu: float      # cores the accumulator process used while streaming
    mapper_busy_s: float        # the mapper's work on the previous revisit during the stream
    labelled: int = 0           # with label images: fused frames that got theirs
    unlabelled: int = 0         # fused frames whose label image never came
    label_images_unused: int = 0  # label images no fused frame had the stamp of
    label_images_thinned: int = 0  # label images of thinned frames (not decoded)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RecordedCamera:
    """One recorded revisit, replayed as a live camera: messages keep their
    relative timing (scaled so images come at ``rate_hz``) and get stamps from
    the wall clock; the recording loops, time keeps going forward."""

    def __init__(self, bag: Path, rate_hz: float, frame_rate_hz: float,
                 extra: tuple[str, ...] = ()) -> None:
        from rclpy.serialization import deserialize_message
        from rosbags.highlevel import AnyReader

        from stseg_ros.ros.replay import message_class

        self.messages: list[tuple[int, str, object]] = []
        self.static: list[object] = []
        self.types: dict[str, str] = {}
        with AnyReader([bag]) as reader:
            for conn, stamp, raw in reader.messages():
                if conn.topic not in (*STREAMED, *extra, "/tf_static"):
                    continue
                self.types[conn.topic] = conn.msgtype
                msg = deserialize_message(bytes(raw), message_class(conn.msgtype))
                if conn.topic == "/tf_static":
                    self.static.append(msg)
                else:
                    self.messages.append((stamp, conn.topic, msg))
        if not any(topic == IMAGE_TOPICS[0] for _, topic, _ in self.messages):
            raise ValueError(f"{bag}: no {IMAGE_TOPICS[0]} messages")
        scale = frame_rate_hz / rate_hz                 # recorded seconds -> streamed seconds
        start, end = self.messages[0][0], self.messages[-1][0]
        self.period_ns = int((end - start) * scale) + int(1e9 / rate_hz)
        self.offsets = [int((stamp - start) * scale) for stamp, _, _ in self.messages]

    def stream(self, publish, seconds: float) -> tuple[int, float]:
        """Publish for ``seconds``; ``publish(topic, msg, stamp_ns)``. Returns
        (image pairs published, worst lag behind schedule in ms)."""
        start_wall, start_ns = time.monotonic(), time.time_ns()
        pairs, worst, loop = 0, 0.0, 0
        while True:
            for offset, (_, topic, msg) in zip(self.offsets, self.messages, strict=True):
                t = loop * self.period_ns + offset
                if t > seconds * 1e9:
                    return pairs, worst
                lag = time.monotonic() - (start_wall + t / 1e9)
                if lag < 0:
                    time.sleep(-lag)
                worst = max(worst, lag * 1000.0)
                publish(topic, msg, start_ns + t)
                pairs += topic == IMAGE_TOPICS[0]
            loop += 1


def _stamp(msg, stamp_ns: int) -> None:
    headers = [t.header for t in msg.transforms] if hasattr(msg, "transforms") else [msg.header]
    for header in headers:
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)


def bench_ingest(rate_hz: float = 30.0, seconds: float = 20.0, revisits: int = 3,
                 fusion_rate_hz: float | None = None, dataset: Path | None = None,
                 progress: bool = True, hogs: int = 0, labels: str = "") -> dict:
    """Stream ``revisits`` revisits of ``seconds`` each at ``rate_hz`` into the
    nodes and return the figures per revisit (see the module docstring). The
    frames come from ``dataset`` (default: the demo room); ``hogs`` busy loops
    run beside. ``labels``: also stream the label images of that variant
    (``stseg generate --labels``; the demo room is generated with them) and
    have the nodes fuse them, to measure what the robot's 2D labels cost."""
    import json

    import rclpy

    from stseg_ros.benchmark.labels import label_topic
    from stseg_ros.ros.demo import demo_dataset, start_node, stop_process
    from stseg_ros.ros.env import localhost_ros_env
    from stseg_ros.ros.replay import Replayer, SpinThread, accounting_gaps, find_bags

    os.environ.update(localhost_ros_env())
    dataset = Path(dataset) if dataset else demo_dataset(labels=(labels,) if labels else ())
    extra = (label_topic(labels),) if labels else ()
    meta = json.loads((dataset / "dataset.json").read_text())
    frame_rate, size = meta["frame_rate_hz"], meta["intrinsics"]
    bags = find_bags([dataset])
    cameras = [RecordedCamera(bags[r % len(bags)], rate_hz, frame_rate, extra)
               for r in range(min(revisits, len(bags)))]
    rows: list[RevisitFigures] = []
    with cpu_hogs(hogs), tempfile.TemporaryDirectory(prefix="stseg-bench-ingest-") as tmp:
        args = ["-p", "status_period_s:=0.0"]
        if fusion_rate_hz is not None:
            args += ["-p", f"max_fusion_rate_hz:={float(fusion_rate_hz)}"]
        mapper_args = ["-p", f"db_path:={tmp}/memory.db"]
        if labels:
            args += ["-p", f"labels.topic:={extra[0]}"]
            mapper_args += ["-p", f"labels.label_set:={dataset / 'label_set.yaml'}"]
        accumulator = start_node("accumulator", *args, log=Path(tmp) / "accumulator.log")
        mapper = start_node("mapper", *mapper_args, log=Path(tmp) / "mapper.log")
        rclpy.init()
        camera = Replayer(clock=False)
        for topic, msgtype in cameras[0].types.items():
            camera.publisher(topic, msgtype)
        spinner = SpinThread(camera)

        def publish(topic: str, msg, stamp_ns: int) -> None:
            _stamp(msg, stamp_ns)
            camera.publisher(topic, cameras[0].types[topic]).publish(msg)

        try:
            camera.wait_for_accumulator()
            for msg in cameras[0].static:
                publish("/tf_static", msg, 0)
            bar = tqdm(total=revisits, desc="ingest", unit="revisit", disable=not progress)
            for r in range(revisits):
                camera.begin_revisit(f"bench-{r}")
                cpu0, t0 = _cpu_seconds(accumulator.pid), time.monotonic()
                pairs, lag = cameras[r % len(cameras)].stream(publish, seconds)
                cpu1, t1 = _cpu_seconds(accumulator.pid), time.monotonic()
                sent = {"color": pairs, "depth": pairs}
                ended = camera.end_revisit(sent)
                t2 = time.monotonic()
                busy = 0.0
                if r > 0:       # the mapper's work on epoch r-1 that overlapped this stream
                    done = camera.epoch_times.get(r - 1, t1)
                    busy = max(0.0, min(done, t1) - t0)
                rows.append(RevisitFigures(
                    ended.revisit, pairs, round(pairs / (t1 - t0), 2), round(lag, 1),
                    ended.frames_fused, ended.frames_thinned, ended.frames_overflow,
                    ended.frames_dropped, ended.frames_received, ended.frames_late,
                    ended.images_unpaired, ended.images_lost, ended.images_missing,
                    accounting_gaps(sent, ended), round(t2 - t1, 2),
                    round((cpu1 - cpu0) / (t1 - t0), 2),
                    round(busy, 1), ended.frames_labelled, ended.frames_unlabelled,
                    ended.label_images_unused, ended.label_images_thinned))
                bar.update()
            bar.close()
            camera.wait_for_epoch(rows[-1].revisit, timeout=120.0)
        finally:
            spinner.stop()
            camera.destroy_node()
            rclpy.try_shutdown()
            for proc in (accumulator, mapper):
                stop_process(proc)
    received = sum(r.received for r in rows)
    return {"rate_hz": rate_hz, "seconds_per_revisit": seconds, "hogs": hogs, "labels": labels,
            "max_fusion_rate_hz": fusion_rate_hz, "image_size": [size["width"], size["height"]],
            "pairs_published": sum(r.pairs_published for r in rows),
            "pairs_received": received,
            "fused": sum(r.fused for r in rows), "thinned": sum(r.thinned for r in rows),
            "overflow": sum(r.overflow for r in rows), "dropped": sum(r.dropped for r in rows),
            "keeps_up": all(r.overflow == 0 for r in rows),
            "images_missing": sum(r.images_missing for r in rows),
            "accounted": all(not r.gaps for r in rows),
            "revisits": [asdict(r) for r in rows]}


def format_ingest(result: dict) -> str:
    """A table per revisit and a verdict line."""
    lines = [f"{result['image_size'][0]}x{result['image_size'][1]} RGB-D at "
             f"{result['rate_hz']:g} Hz, {result['seconds_per_revisit']:g} s per revisit"
             + (f", {result['hogs']} busy loops beside" if result.get("hogs") else ""),
             "revisit  published   Hz   fused  thinned  overflow  dropped  end wait  "
             "accumulator CPU  mapper busy"]
    for r in result["revisits"]:
        lines.append(f"{r['revisit']:>7}  {r['pairs_published']:>9}  {r['publish_rate_hz']:>4.1f}"
                     f"  {r['fused']:>6}  {r['thinned']:>7}  {r['overflow']:>8}  "
                     f"{r['dropped']:>7}  {r['end_wait_s']:>6.2f} s  {r['accumulator_cpu']:>10.2f}"
                     f" cores  {r['mapper_busy_s']:>8.1f} s")
    lost = result["pairs_published"] - result["pairs_received"]
    verdict = "keeps up" if result["keeps_up"] else "FALLS BEHIND"
    lines.append(f"{verdict}: {result['overflow']} frames overflowed the fusion queue; "
                 f"{lost} of {result['pairs_published']} published pairs never reached it "
                 f"as a pair ({result['images_missing']} images missing)")
    if result.get("labels"):
        rows = result["revisits"]
        lines.append(f"label images ({result['labels']}): "
                     f"{sum(r['labelled'] for r in rows)} fused frames labelled, "
                     f"{sum(r['unlabelled'] for r in rows)} without their label image, "
                     f"{sum(r['label_images_thinned'] for r in rows)} of thinned frames, "
                     f"{sum(r['label_images_unused'] for r in rows)} unused")
    gaps = [g for r in result["revisits"] for g in r["gaps"]]
    lines.append("every image accounted for" if not gaps else
                 "ACCOUNTING DOES NOT ADD UP: " + "; ".join(gaps))
    return "\n".join(lines)
