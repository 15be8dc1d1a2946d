"""Top-view pictures of a dataset epoch, to check a scenario at a glance.

Points are drawn in the map frame, coloured by persistent instance id (the
same colours as the RViz markers); moves are arrows from the old to the new
pose (purple for swaps of identical objects), removals red crosses, additions
green rings, and the robot's drive a thin line from its start (triangle).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stseg_ros.core.classes import class_id
from stseg_ros.core.colors import identity_color
from stseg_ros.core.layout import EpochResult
from stseg_ros.core.pointcloud import transform_points

if TYPE_CHECKING:
    from stseg_ros.benchmark.generate import LabelledPoints
    from stseg_ros.benchmark.scene import Epoch, Scenario
    from stseg_ros.benchmark.trajectory import Trajectory

CEILING = class_id("ceiling")
FLOOR = class_id("floor")


def write_epoch_preview(path: Path, scenario: Scenario, epoch: Epoch, points: LabelledPoints,
                        trajectory: Trajectory, truth: EpochResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xyz = transform_points(truth.map_from_odom, points.xyz.astype(np.float64))
    keep = points.class_id != CEILING
    xyz, inst, cls = xyz[keep], points.instance_id[keep], points.class_id[keep]
    order = np.argsort(np.where(inst > 0, xyz[:, 2] + 10, xyz[:, 2]))  # objects over structure
    colors = np.empty((len(inst), 3))
    colors[:] = (0.55, 0.55, 0.55)
    colors[cls == FLOOR] = (0.86, 0.86, 0.86)
    for i in np.unique(inst[inst > 0]):
        colors[inst == i] = identity_color(int(i))

    poly = scenario.room.polygon
    span = np.ptp(poly, axis=0)
    fig, ax = plt.subplots(figsize=(2 + 6 * span[0] / span.max(), 1.4 + 6 * span[1] / span.max()),
                           dpi=110)
    ax.scatter(xyz[order, 0], xyz[order, 1], c=colors[order], s=0.6, linewidths=0,
               rasterized=True)
    ax.plot(*np.vstack([poly, poly[:1]]).T, color="k", lw=1.2)
    base = trajectory.base
    ax.plot(base[:, 0], base[:, 1], color="0.25", lw=0.6, alpha=0.7)
    ax.plot(base[0, 0], base[0, 1], marker=(3, 0, np.degrees(base[0, 2]) - 90), ms=9,
            color="0.15")
    for entry in truth.instances.values():
        if entry.pose and entry.num_points:
            ax.annotate(f"{entry.class_name} #{entry.id}", (entry.pose["x"], entry.pose["y"]),
                        fontsize=6, ha="center", va="center",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.6,
                              "lw": 0})
    for change in truth.changes if epoch.index > 0 else []:
        prev, cur = change.previous, change.current
        if change.kind == "moved":
            ax.annotate("", (cur["x"], cur["y"]), (prev["x"], prev["y"]),
                        arrowprops={"arrowstyle": "->", "lw": 1.4,
                                    "color": "tab:purple" if change.ambiguous else "tab:blue"})
        elif change.kind == "removed":
            ax.plot(prev["x"], prev["y"], "x", color="tab:red", ms=10, mew=2)
        elif change.kind == "added":
            ax.plot(cur["x"], cur["y"], "o", mfc="none", color="tab:green", ms=14, mew=2)
    kinds = [c.kind for c in truth.changes] if epoch.index > 0 else []
    summary = ", ".join(f"{kinds.count(k)} {k}" for k in ("moved", "removed", "added")
                        if kinds.count(k))
    ax.set_title(f"epoch {epoch.index}: {len(epoch.objects)} objects"
                 f"{'; ' + summary if summary else ''}; coverage {epoch.coverage:.0%}",
                 fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, map)")
    ax.set_ylabel("y (m, map)")
    ax.margins(0.03)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
