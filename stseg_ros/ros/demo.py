"""`stseg demo`: the main job on embedded defaults, on a live ROS graph.

A generated room with three revisits (cached after the first run) is
replayed bag by bag into the accumulator and mapper nodes, each started as
its own process; then the object memory they wrote is printed (objects and
change events per revisit), scored against the room's ground truth, and
drawn as a top-view PNG.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from stseg_ros.ros.env import localhost_ros_env

DEMO_SEED = 41
DEMO_FRAMES = 80          # per revisit: 16 s at 5 Hz


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stseg_ros"


def demo_dataset(seed: int = DEMO_SEED, frames: int = DEMO_FRAMES,
                 labels: tuple[str, ...] = ()) -> Path:
    """The demo room (three revisits as bags), generated once and then reused;
    ``labels``: with those label-image variants (``stseg generate --labels``)."""
    from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset

    root = cache_dir() / (f"demo-seed{seed}-frames{frames}"
                          + "".join(f"-labels-{v}" for v in labels))
    if not (root / "dataset.json").is_file():
        print(f"generating the demo room into {root} (once; later runs reuse it) ...")
        generate_dataset(root, GenerateConfig(seed=seed, revisits=3, rooms=1, frames=frames,
                                              labels=labels))
    return root


def start_node(executable: str, *ros_args: str, env: dict[str, str] | None = None,
               log: Path | None = None) -> subprocess.Popen:
    """Start one of the package's node executables (``accumulator``,
    ``mapper``, ``mapping``, ``map_server``: as ``ros2 run`` names them) with
    these ROS arguments as a child process, writing to ``log`` if given."""
    cmd = [sys.executable, "-m", "stseg_ros.ros.entry", executable]
    if ros_args:
        cmd += ["--ros-args", *ros_args]
    out = open(log, "w") if log else None      # noqa: SIM115 - the child owns it
    return subprocess.Popen(cmd, env=env or localhost_ros_env(), stdout=out,
                            stderr=subprocess.STDOUT if out else None)


def log_tail(log: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a node's log (``start_node(..., log=)``)."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop_process(proc: subprocess.Popen, timeout: float | None = None) -> int:
    """SIGINT (a clean rclpy shutdown), then SIGKILL if it does not exit within
    ``timeout`` (default: the longest a node's clean stop may take, waiting for
    the revisit it maps, and 15 s to close); before the SIGKILL a node is asked
    (SIGUSR1) to print its threads' stacks to its log, so a stop that hung says
    where."""
    if timeout is None:
        from stseg_ros.ros.lifecycle import RELEASE_WAIT_S

        timeout = RELEASE_WAIT_S + 15.0
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            proc.kill()
            proc.wait()
    return proc.returncode


def clear_demo_outputs(out: Path) -> None:
    """Remove what an earlier demo wrote into ``out`` (its object memory and its
    recording, which the bag writer refuses to overwrite); other files stay."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "memory.db", out / "memory.db-wal", out / "memory.db-shm"):
        stale.unlink(missing_ok=True)
    if (out / "outputs").is_dir():
        shutil.rmtree(out / "outputs")


def run_demo(out: Path = Path("stseg_demo"), rate: float = 2.0, timeout: float = 300.0) -> int:
    from stseg_ros.core.report import format_epoch_changes, format_epoch_objects
    from stseg_ros.memory import ObjectMemory
    from stseg_ros.metrics.evaluate import evaluate, format_metrics
    from stseg_ros.offline.runner import write_scene_predictions
    from stseg_ros.ros.replay import find_bags, replay
    from stseg_ros.viz.topview import write_topview

    os.environ.update(localhost_ros_env())
    dataset = demo_dataset()
    out = Path(out)
    clear_demo_outputs(out)                        # every demo maps from scratch
    db = out / "memory.db"
    nodes = [start_node("accumulator", log=out / "accumulator.log"),
             start_node("mapper", "-p", f"db_path:={db.resolve()}", log=out / "mapper.log")]
    print(f"accumulator (pid {nodes[0].pid}) and mapper (pid {nodes[1].pid}) started; "
          f"logs in {out}/")
    try:
        reports = replay(find_bags([dataset]), rate=rate, record=out / "outputs",
                         wait_s=timeout)
    except TimeoutError as err:
        print(f"demo: {err}; see {out}/mapper.log", file=sys.stderr)
        return 1
    finally:
        for proc in nodes:
            stop_process(proc)
    with ObjectMemory(db) as memory:
        for epoch in memory.epoch_indices():
            seen = memory.observations(epoch)
            print(format_epoch_objects(epoch, seen))
            print(format_epoch_changes(epoch, memory.changes(epoch)))
        picture = write_topview(memory, out / "map.png")
        write_scene_predictions(dataset, out / "predictions", "scene_000", memory)
    fused = sum(r.frames_fused for r in reports)
    dropped = sum(r.frames_dropped for r in reports)
    print(f"\nframes: {fused} fused, {dropped} dropped over {len(reports)} revisits "
          f"(replayed at {rate:g}x)")
    print("\n=== scored against the room's ground truth ===")
    print(format_metrics(evaluate(dataset, out / "predictions")))
    print(f"\nmap picture: {picture}\nobject memory: {db}\nrecorded outputs: {out / 'outputs'}")
    return 0
