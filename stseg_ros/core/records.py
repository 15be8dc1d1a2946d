"""Plain records exchanged between the core library, the CLI and the ROS layer.

They mirror the typed interfaces in ``msg/`` field for field, so the ROS layer
only converts and never decides anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum


def yaw_difference(a: float, b: float) -> float:
    """Absolute difference of two yaw angles (rad), wrapped to [0, pi]."""
    return abs(math.atan2(math.sin(b - a), math.cos(b - a)))


class ObjectState(IntEnum):
    """Whether an object was seen in the epoch a record describes (ObjectInstance.STATE_*)."""

    PRESENT = 0
    REMOVED = 1
    UNOBSERVED = 2


class ChangeKind(IntEnum):
    """Kinds of scene change between consecutive epochs (ChangeEvent.KIND_*)."""

    ADDED = 0
    REMOVED = 1
    MOVED = 2
    RELABELLED = 3


@dataclass(frozen=True)
class Pose:
    """Rigid pose in the map frame: position in metres, orientation as a unit quaternion."""

    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)  # x, y, z, w

    @classmethod
    def from_xyz_yaw(cls, x: float, y: float, z: float, yaw: float) -> Pose:
        """Pose of an object standing on the floor, rotated by ``yaw`` about +z."""
        half = 0.5 * yaw
        return cls((float(x), float(y), float(z)), (0.0, 0.0, math.sin(half), math.cos(half)))

    @property
    def yaw(self) -> float:
        """Rotation about +z in radians, in (-pi, pi]."""
        qx, qy, qz, qw = self.orientation
        return math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))

    def distance_to(self, other: Pose) -> float:
        """Euclidean distance between the two positions (m)."""
        return math.dist(self.position, other.position)


@dataclass
class ObjectRecord:
    """One persistent object as known after one epoch (msg/ObjectInstance)."""

    id: int
    class_id: int
    class_name: str
    score: float
    pose: Pose
    extents: tuple[float, float, float]
    num_points: int
    epoch_first_seen: int
    epoch_last_seen: int
    state: ObjectState = ObjectState.PRESENT
    # how sure the segmenter is that this is one whole object, whatever its
    # class (class-agnostic ranking); None where the segmenter gave none
    objectness: float | None = None


@dataclass
class ChangeRecord:
    """One change detected when an epoch was added to the map (msg/ChangeEvent)."""

    kind: ChangeKind
    object_id: int
    class_id: int
    class_name: str
    epoch: int
    previous_pose: Pose = field(default_factory=Pose)
    current_pose: Pose = field(default_factory=Pose)
    previous_class_id: int = 0
    confidence: float = 1.0

    @property
    def displacement(self) -> float:
        """Translation between the poses (m); 0 unless the object moved."""
        if self.kind != ChangeKind.MOVED:
            return 0.0
        return self.previous_pose.distance_to(self.current_pose)

    @property
    def rotation(self) -> float:
        """Absolute yaw change (rad) wrapped to [0, pi]; 0 unless the object moved."""
        if self.kind != ChangeKind.MOVED:
            return 0.0
        return yaw_difference(self.previous_pose.yaw, self.current_pose.yaw)

