"""Conversions between core records and the typed interfaces of ``msg/``.

Only field copying lives here; every decision is made in the core library.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from geometry_msgs.msg import Point, PoseWithCovariance, Quaternion, Vector3
from geometry_msgs.msg import Pose as PoseMsg
from std_msgs.msg import Header
from vision_msgs.msg import (
    BoundingBox3D,
    Detection3D,
    Detection3DArray,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
)

from stseg_ros.core.query import ObjectQuery
from stseg_ros.core.records import ChangeKind, ChangeRecord, ObjectRecord, ObjectState, Pose
from stseg_ros.ingest.accumulator import RevisitResult
from stseg_ros.mapping.drift import FusedScan
from stseg_ros.msg import ChangeEvent, ObjectInstance, RevisitScan
from stseg_ros.ros.pointcloud2 import from_cloud, pack_rgb, to_cloud, unpack_rgb


def pose_to_msg(pose: Pose) -> PoseMsg:
    x, y, z = pose.position
    qx, qy, qz, qw = pose.orientation
    return PoseMsg(position=Point(x=float(x), y=float(y), z=float(z)),
                   orientation=Quaternion(x=float(qx), y=float(qy), z=float(qz), w=float(qw)))


def pose_from_msg(msg: PoseMsg) -> Pose:
    p, q = msg.position, msg.orientation
    return Pose((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))


def object_to_msg(obj: ObjectRecord) -> ObjectInstance:
    ex, ey, ez = obj.extents
    return ObjectInstance(
        id=int(obj.id), class_id=int(obj.class_id), class_name=obj.class_name,
        score=float(obj.score), pose=pose_to_msg(obj.pose),
        extents=Vector3(x=float(ex), y=float(ey), z=float(ez)),
        num_points=int(obj.num_points), epoch_first_seen=int(obj.epoch_first_seen),
        epoch_last_seen=int(obj.epoch_last_seen), state=int(obj.state))


def object_from_msg(msg: ObjectInstance) -> ObjectRecord:
    return ObjectRecord(
        id=msg.id, class_id=msg.class_id, class_name=msg.class_name, score=msg.score,
        pose=pose_from_msg(msg.pose), extents=(msg.extents.x, msg.extents.y, msg.extents.z),
        num_points=msg.num_points, epoch_first_seen=msg.epoch_first_seen,
        epoch_last_seen=msg.epoch_last_seen, state=ObjectState(msg.state))


def detection_to_msg(obj: ObjectRecord, header: Header) -> Detection3D:
    """One object as a standard detection: id as a string, its NYU40 class name
    and score as the one hypothesis, its oriented box in the header's frame."""
    ex, ey, ez = obj.extents
    pose = pose_to_msg(obj.pose)
    return Detection3D(
        header=header, id=str(int(obj.id)),
        results=[ObjectHypothesisWithPose(
            hypothesis=ObjectHypothesis(class_id=obj.class_name, score=float(obj.score)),
            pose=PoseWithCovariance(pose=pose))],
        bbox=BoundingBox3D(center=pose,
                           size=Vector3(x=float(ex), y=float(ey), z=float(ez))))


def detections_to_msg(objects: Iterable[ObjectRecord], header: Header) -> Detection3DArray:
    """The present objects of an epoch as ``vision_msgs/Detection3DArray``;
    removed and unobserved ones are left out (nothing is there to detect)."""
    return Detection3DArray(header=header, detections=[
        detection_to_msg(o, header) for o in objects if o.state == ObjectState.PRESENT])


def change_to_msg(change: ChangeRecord) -> ChangeEvent:
    return ChangeEvent(
        kind=int(change.kind), object_id=int(change.object_id), class_id=int(change.class_id),
        class_name=change.class_name, previous_class_id=int(change.previous_class_id),
        epoch=int(change.epoch), previous_pose=pose_to_msg(change.previous_pose),
        current_pose=pose_to_msg(change.current_pose),
        displacement=float(change.displacement), rotation=float(change.rotation),
        confidence=float(change.confidence))


def change_from_msg(msg: ChangeEvent) -> ChangeRecord:
    return ChangeRecord(
        kind=ChangeKind(msg.kind), object_id=msg.object_id, class_id=msg.class_id,
        class_name=msg.class_name, epoch=msg.epoch,
        previous_pose=pose_from_msg(msg.previous_pose),
        current_pose=pose_from_msg(msg.current_pose),
        previous_class_id=msg.previous_class_id, confidence=msg.confidence)


def query_from_request(request) -> ObjectQuery:
    """ObjectQuery from a QueryObjects request; raises ValueError on a bad request."""
    region = None
    if request.use_region:
        lo, hi = request.region_min, request.region_max
        region = ((lo.x, lo.y, lo.z), (hi.x, hi.y, hi.z))
    states = set(bytes(request.states)) if request.states else set()
    unknown = states - {int(s) for s in ObjectState}
    if unknown:
        raise ValueError(f"unknown state value(s) {sorted(unknown)}")
    return ObjectQuery(class_ids=set(request.class_ids), class_names=set(request.class_names),
                       ids=set(request.ids), states=states, region=region)


def scan_to_msg(result: RevisitResult, header: Header) -> RevisitScan:
    """A closed revisit as the accumulator hands it to the mapper."""
    scan = result.scan
    fragment_index = np.concatenate(
        [np.full(len(f), k, np.uint32) for k, f in enumerate(scan.fragments)] or
        [np.zeros(0, np.uint32)])
    fragments = (np.concatenate(scan.fragments).astype(np.float32) if scan.fragments
                 else np.zeros((0, 3), np.float32))
    down = scan.camera_down if scan.camera_down is not None else np.zeros(3)
    labels = {} if scan.labels is None else {   # the robot's 2D labels, when it sent them
        "label": scan.labels.astype(np.uint32), "label_share": scan.label_share}
    return RevisitScan(
        header=header, revisit=int(result.revisit), label=result.label,
        frames_fused=int(result.fused), frames_dropped=int(result.dropped),
        surface=to_cloud(header, x=scan.xyz[:, 0], y=scan.xyz[:, 1], z=scan.xyz[:, 2],
                         rgb=pack_rgb(scan.rgb), **labels),
        fragments=to_cloud(header, x=fragments[:, 0], y=fragments[:, 1], z=fragments[:, 2],
                           fragment=fragment_index),
        camera_down=Vector3(x=float(down[0]), y=float(down[1]), z=float(down[2])))


def scan_from_msg(msg: RevisitScan) -> FusedScan:
    """The revisit's scan; raises ValueError on a cloud without the needed fields."""
    surface, fragments = from_cloud(msg.surface), from_cloud(msg.fragments)
    for cloud, names in ((surface, ("x", "y", "z", "rgb")),
                         (fragments, ("x", "y", "z", "fragment"))):
        missing = [n for n in names if n not in (cloud.dtype.names or ())]
        if missing:
            raise ValueError(f"revisit scan cloud lacks field(s) {missing}")
    xyz = np.stack([surface["x"], surface["y"], surface["z"]], 1).astype(np.float32)
    parts = np.stack([fragments["x"], fragments["y"], fragments["z"]], 1).astype(np.float32)
    index = fragments["fragment"].astype(np.int64)
    pieces = [parts[index == k] for k in range(int(index.max()) + 1)] if len(index) else []
    down = np.array([msg.camera_down.x, msg.camera_down.y, msg.camera_down.z])
    names = surface.dtype.names
    labelled = "label" in names and "label_share" in names
    return FusedScan(xyz, unpack_rgb(surface["rgb"]), [p for p in pieces if len(p)],
                     down if np.isfinite(down).all() and np.linalg.norm(down) > 0 else None,
                     surface["label"].astype(np.int32) if labelled else None,
                     surface["label_share"].astype(np.float32) if labelled else None)
