"""Soak: many revisits through the nodes while they are killed and restarted.

The accumulator and the mapper run as their own processes, with CPU hogs
beside them. This process plays the camera (the demo room's recorded frames
with fresh stamps, as ``stseg bench ingest`` does) and drives one revisit
after another. In some revisits one node, chosen at random, is SIGKILLed at
a random moment and started again at once, as a supervisor would: the
accumulator while the camera streams into its open revisit, the mapper while
the camera streams or while it maps the revisit (and commits it).

Afterwards the object memory must show nothing lost:

- every epoch once committed is still there, unchanged (its objects, ids and
  points, compared with what was read right after it was committed), and the
  file passes SQLite's integrity check;
- every revisit the accumulator closed became an epoch, whoever was killed
  meanwhile (the accumulator's revisits are latched, so a restarted mapper
  receives the ones it had not stored);
- every image of every closed revisit is accounted for (``accounting_gaps``);
  a revisit whose accumulator was killed while it was open is reported lost
  with its process, with the frames streamed into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stseg_ros.bench.load import cpu_hogs

NODES = ("accumulator", "mapper")


@dataclass(frozen=True)
class SoakConfig:
    revisits: int = 20
    seconds: float = 4.0            # camera streaming per revisit
    rate_hz: float = 10.0           # camera frame rate
    kill_probability: float = 0.5   # per revisit, that one of the nodes is killed
    hogs: int = 2                   # busy-loop processes beside the nodes
    seed: int = 0
    segmenter: str = "geometric"    # the mapper's; the soak is about what is kept
    map_timeout_s: float = 120.0    # longest wait for one revisit to be mapped


@dataclass
class RevisitOutcome:
    label: str
    killed: str = ""                # node SIGKILLed during this revisit, if any
    killed_at_s: float = 0.0        # seconds after the revisit began
    pairs_published: int = 0
    closed: bool = False            # end_revisit answered
    lost: str = ""                  # why the revisit was lost, if it was
    frames_fused: int = 0
    images_missing: int = 0
    gaps: list[str] = field(default_factory=list)
    mapped: bool = False            # became an epoch


class _KilledError(Exception):
    """The accumulator was killed while its revisit streamed."""


def epoch_digest(memory, epoch: int) -> str:
    """A digest of what one epoch stored: its objects (ids, classes, poses,
    states) and its points."""
    h = hashlib.sha256()
    for obj in sorted(memory.observations(epoch), key=lambda o: o.id):
        h.update(repr(obj).encode())
    points = memory.points(epoch)
    if points is not None:
        for array in (points.xyz, points.rgb, points.instance_id, points.class_id):
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


class _Nodes:
    """The two node processes, restartable."""

    def __init__(self, tmp: Path, db: Path, segmenter: str) -> None:
        self.tmp, self.db, self.segmenter = tmp, db, segmenter
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts = dict.fromkeys(NODES, 0)
        for name in NODES:
            self.start(name)

    def start(self, name: str) -> None:
        from stseg_ros.ros.demo import start_node

        args = (["-p", "status_period_s:=0.0"] if name == "accumulator" else
                ["-p", f"db_path:={self.db}", "-p", f"segmentation.segmenter:={self.segmenter}"])
        self.starts[name] += 1
        self.procs[name] = start_node(name, *args,
                                      log=self.tmp / f"{name}.{self.starts[name]}.log")

    def kill(self, name: str) -> None:
        """SIGKILL, then start again at once."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.start(name)

    def stop(self) -> dict[str, int]:
        from stseg_ros.ros.demo import stop_process

        return {name: stop_process(proc) for name, proc in self.procs.items()}

    def log_tail(self, name: str, lines: int = 60) -> str:
        """The end of the running (last started) process's log."""
        from stseg_ros.ros.demo import log_tail

        return log_tail(self.tmp / f"{name}.{self.starts[name]}.log", lines)


def _stored(db: Path) -> dict[str, int]:
    """label -> epoch of what the memory holds now (empty while it does not exist)."""
    from stseg_ros.memory import ObjectMemory

    if not db.exists():
        return {}
    with ObjectMemory(db) as memory:
        return {e.label: e.index for e in memory.epochs()}


def _begin(camera, label: str, tries: int = 4) -> None:
    """begin_revisit, asked again while unanswered: after a kill, discovery still
    lists the dead accumulator's service for a while (the middleware's lease),
    and a request that reached only the dead one gets no answer."""
    for attempt in range(tries):
        try:
            camera.begin_revisit(label, timeout=10.0)
            return
        except TimeoutError:
            if attempt == tries - 1:
                raise


def bench_soak(cfg: SoakConfig = SoakConfig(), dataset: Path | None = None,
               progress: bool = True) -> dict:
    """Run the soak (see the module docstring) and return its report."""
    import rclpy

    from stseg_ros.bench.ingest import RecordedCamera, _stamp
    from stseg_ros.memory import ObjectMemory
    from stseg_ros.ros.demo import demo_dataset
    from stseg_ros.ros.env import localhost_ros_env
    from stseg_ros.ros.replay import Replayer, SpinThread, accounting_gaps, find_bags

    os.environ.update(localhost_ros_env())
    dataset = Path(dataset) if dataset else demo_dataset()
    meta = json.loads((dataset / "dataset.json").read_text())
    camera_source = RecordedCamera(find_bags([dataset])[0], cfg.rate_hz, meta["frame_rate_hz"])
    rng = np.random.default_rng(cfg.seed)
    outcomes: list[RevisitOutcome] = []
    digests: dict[int, str] = {}
    start = time.monotonic()
    with cpu_hogs(cfg.hogs), tempfile.TemporaryDirectory(prefix="stseg-soak-") as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "memory.db"
        nodes = _Nodes(tmp, db, cfg.segmenter)
        rclpy.init()
        camera = Replayer(clock=False)
        for topic, msgtype in camera_source.types.items():
            camera.publisher(topic, msgtype)
        spinner = SpinThread(camera)
        killed_accumulator = threading.Event()
        streamed = {"pairs": 0}

        def publish(topic: str, msg, stamp_ns: int) -> None:
            if killed_accumulator.is_set():
                raise _KilledError
            _stamp(msg, stamp_ns)
            streamed["pairs"] += topic == "/camera/color/image_raw"
            camera.publisher(topic, camera_source.types[topic]).publish(msg)

        try:
            camera.wait_for_accumulator(timeout=60.0)
            camera.mapped_epochs(timeout=60.0)            # the mapper is up and has its memory
            for msg in camera_source.static:
                publish("/tf_static", msg, 0)
            bar = tqdm(total=cfg.revisits, desc="soak", unit="revisit", disable=not progress)
            for r in range(cfg.revisits):
                out = RevisitOutcome(f"soak-{r:02d}")
                timer = None
                if rng.random() < cfg.kill_probability:
                    out.killed = str(rng.choice(NODES))
                    window = cfg.seconds if out.killed == "accumulator" else cfg.seconds + 3.0
                    out.killed_at_s = round(float(rng.uniform(0.0, window)), 2)

                    def kill(name=out.killed):
                        if name == "accumulator":
                            killed_accumulator.set()
                        nodes.kill(name)

                    timer = threading.Timer(out.killed_at_s, kill)
                streamed["pairs"] = 0
                try:
                    _begin(camera, out.label)
                    if timer:
                        timer.start()
                    camera_source.stream(publish, cfg.seconds)
                    sent = {"color": streamed["pairs"], "depth": streamed["pairs"]}
                    answer = camera.end_revisit(sent)
                    if killed_accumulator.is_set():
                        raise _KilledError        # answered by the process that was then killed
                    out.closed = answer.success
                    out.frames_fused, out.images_missing = answer.frames_fused, \
                        answer.images_missing
                    out.gaps = accounting_gaps(sent, answer)
                except (_KilledError, TimeoutError) as err:
                    out.lost = ("its accumulator was killed while it was open"
                                if killed_accumulator.is_set() else str(err))
                if timer and timer.ident is not None:
                    timer.join()
                elif timer:                              # begin_revisit itself failed
                    out.killed, out.killed_at_s = "", 0.0
                out.pairs_published = streamed["pairs"]
                if killed_accumulator.is_set():
                    out.lost = out.lost or "its accumulator was killed while it was open"
                    out.closed = False
                    camera.wait_for_accumulator(timeout=60.0)
                    killed_accumulator.clear()
                if out.closed:
                    deadline = time.monotonic() + cfg.map_timeout_s
                    while out.label not in _stored(db) and time.monotonic() < deadline:
                        time.sleep(0.5)
                with ObjectMemory(db) as memory:          # what was committed, as committed
                    for epoch in set(memory.epoch_indices()) - set(digests):
                        digests[epoch] = epoch_digest(memory, epoch)
                outcomes.append(out)
                bar.update()
            bar.close()
        finally:
            spinner.stop()
            camera.destroy_node()
            rclpy.try_shutdown()
            codes = nodes.stop()
            unclean = {name: nodes.log_tail(name) for name, code in codes.items() if code}
        with ObjectMemory(db) as memory:
            integrity = memory.db.execute("PRAGMA integrity_check").fetchone()[0]
            stored = {e.label: e.index for e in memory.epochs()}
            changed = sorted(e for e, d in digests.items()
                             if e not in stored.values() or epoch_digest(memory, e) != d)
    for out in outcomes:
        out.mapped = out.label in stored
    unmapped = [o.label for o in outcomes if o.closed and o.frames_fused and not o.mapped]
    gaps = [f"{o.label}: {g}" for o in outcomes for g in o.gaps]
    return {
        "config": asdict(cfg), "seconds": round(time.monotonic() - start, 1),
        "kills": {name: sum(o.killed == name for o in outcomes) for name in NODES},
        "revisits_closed": sum(o.closed for o in outcomes),
        "revisits_lost": [{"label": o.label, "why": o.lost, "pairs_streamed": o.pairs_published}
                          for o in outcomes if o.lost],
        "epochs": len(stored), "epochs_changed": changed, "closed_but_not_mapped": unmapped,
        "accounting_gaps": gaps, "images_missing": sum(o.images_missing for o in outcomes),
        "integrity": integrity, "exit_codes": codes, "unclean_exit_logs": unclean,
        "nothing_lost": not changed and not unmapped and not gaps and integrity == "ok",
        "revisits": [asdict(o) for o in outcomes]}


def format_soak(result: dict) -> str:
    """A line per revisit and the verdict."""
    lines = ["revisit   killed (at s)        closed  fused  missing  mapped"]
    for o in result["revisits"]:
        killed = f"{o['killed']} ({o['killed_at_s']:.1f})" if o["killed"] else "-"
        lines.append(f"{o['label']:<9} {killed:<20} {'yes' if o['closed'] else 'no':<6} "
                     f"{o['frames_fused']:>6}  {o['images_missing']:>7}  "
                     f"{'yes' if o['mapped'] else 'no'}" + (f"  lost: {o['lost']}"
                                                            if o["lost"] else ""))
    kills = ", ".join(f"{n} {k}" for n, k in result["kills"].items())
    lines.append(f"{len(result['revisits'])} revisits in {result['seconds']:.0f} s, kills: "
                 f"{kills}; {result['epochs']} epochs stored, integrity {result['integrity']}")
    if result["nothing_lost"]:
        lines.append("nothing lost: every committed epoch unchanged, every closed revisit "
                     "mapped, every image accounted for")
    else:
        for key in ("epochs_changed", "closed_but_not_mapped", "accounting_gaps"):
            if result[key]:
                lines.append(f"LOST: {key.replace('_', ' ')}: {result[key]}")
    for name, tail in result["unclean_exit_logs"].items():
        lines.append(f"{name} exited with {result['exit_codes'][name]} when stopped; "
                     f"the end of its log:\n{tail}")
    return "\n".join(lines)
