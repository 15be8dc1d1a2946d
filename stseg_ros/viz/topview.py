"""A top view of the object memory as a PNG: an epoch's points, each
object's footprint in its identity colour (the colours of the RViz markers)
with a "chair #12" label, and the changes of that epoch: arrows for moves,
'+' for additions, crossed dashed boxes where objects were removed. The
latest epoch shows every known object (unobserved ones dotted); an earlier
one the objects seen in it, as they were then."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from stseg_ros.core.colors import identity_color
from stseg_ros.core.records import ChangeKind, ObjectRecord, ObjectState, Pose
from stseg_ros.memory import ObjectMemory


def _footprint(pose: Pose, extents) -> np.ndarray:
    """The corners (5, 2; closed) of an object's box seen from above."""
    dx, dy = extents[0] / 2, extents[1] / 2
    c, s = math.cos(pose.yaw), math.sin(pose.yaw)
    corners = np.array([[-dx, -dy], [dx, -dy], [dx, dy], [-dx, dy], [-dx, -dy]])
    return corners @ np.array([[c, s], [-s, c]]) + np.asarray(pose.position[:2])


def write_topview(memory: ObjectMemory, path: Path, epoch: int | None = None,
                  title: str = "") -> Path:
    """Draw the memory as it stood after ``epoch`` (default: the latest) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = memory.epoch_indices()
    if not epochs:
        raise ValueError(f"{memory.path}: the memory holds no epoch to draw")
    epoch = epochs[-1] if epoch is None else epoch
    if epoch not in epochs:
        raise ValueError(f"{memory.path}: no epoch {epoch} to draw (it holds {epochs})")
    objects: list[ObjectRecord] = (memory.objects() if epoch == epochs[-1]
                                   else memory.observations(epoch))
    fig, ax = plt.subplots(figsize=(9, 8), dpi=110)
    placed = [e.index for e in memory.epochs() if e.registered and e.index <= epoch]
    points = memory.points(placed[-1]) if placed else None   # the latest in the map frame
    if points is not None and len(points.xyz):
        keep = np.random.default_rng(0).permutation(len(points.xyz))[:60_000]
        xyz = points.xyz[keep]
        floor = np.percentile(xyz[:, 2], 2)
        above = xyz[:, 2] > floor + 0.05              # the floor would hide everything
        ax.scatter(xyz[above, 0], xyz[above, 1], s=1.0, c=points.rgb[keep][above] / 255.0,
                   alpha=0.6, linewidths=0)
    for obj in objects:
        if obj.state == ObjectState.REMOVED:
            continue
        corners = _footprint(obj.pose, obj.extents)
        color = identity_color(obj.id)
        faded = obj.state == ObjectState.UNOBSERVED
        ax.fill(corners[:, 0], corners[:, 1], color=color, alpha=0.15 if faded else 0.45)
        ax.plot(corners[:, 0], corners[:, 1], color=color, lw=1.5, ls=":" if faded else "-")
        ax.text(obj.pose.position[0], obj.pose.position[1], f"{obj.class_name} #{obj.id}",
                fontsize=7, ha="center", va="center",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0})
    extents = {o.id: o.extents for o in objects}
    for change in memory.changes(epoch):
        color = identity_color(change.object_id)
        if change.kind == ChangeKind.MOVED:
            (x0, y0), (x1, y1) = change.previous_pose.position[:2], change.current_pose.position[:2]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops={"arrowstyle": "-|>", "color": color, "lw": 2.5})
        elif change.kind == ChangeKind.ADDED:
            x, y = change.current_pose.position[:2]
            ax.plot([x], [y], marker="P", ms=14, color=color, mec="black")
        elif change.kind == ChangeKind.REMOVED:
            corners = _footprint(change.previous_pose, extents.get(change.object_id, (0.4,) * 3))
            ax.plot(corners[:, 0], corners[:, 1], color=color, lw=1.5, ls="--")
            ax.plot(corners[[0, 2], 0], corners[[0, 2], 1], color=color, lw=1.5)
            ax.plot(corners[[1, 3], 0], corners[[1, 3], 1], color=color, lw=1.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, map frame)")
    ax.set_ylabel("y (m)")
    present = sum(o.state == ObjectState.PRESENT for o in objects)
    ax.set_title(title or f"epoch {epoch}: {present} objects present; changes: arrow moved, "
                          "+ added, crossed box removed", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
