"""RViz markers for persistent objects: a box and a text label per identity,
one fixed colour per id, deleted when the object is removed; and an arrow
from old to new place for each object that moved in the published epoch."""

from __future__ import annotations

from collections.abc import Iterable

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from stseg_ros.core.colors import identity_color
from stseg_ros.core.records import ChangeKind, ChangeRecord, ObjectRecord, ObjectState
from stseg_ros.ros.conversions import pose_to_msg

BOX_NAMESPACE = "objects"
LABEL_NAMESPACE = "labels"
CHANGE_NAMESPACE = "changes"


def object_markers(objects: Iterable[ObjectRecord], header: Header,
                   changes: Iterable[ChangeRecord] = ()) -> MarkerArray:
    """Boxes and labels for present and unobserved objects (unobserved ones are
    drawn translucent); DELETE markers for removed ones. Arrows for this
    epoch's moves; an object that did not move has its arrow deleted."""
    out = MarkerArray()
    moves = {c.object_id: c for c in changes if c.kind == ChangeKind.MOVED}
    for obj in objects:
        arrow = Marker(header=header, ns=CHANGE_NAMESPACE, id=int(obj.id))
        move = moves.get(obj.id)
        if move is None:
            arrow.action = Marker.DELETE
        else:
            r, g, b = identity_color(obj.id)
            arrow.type, arrow.action = Marker.ARROW, Marker.ADD
            arrow.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2]) + 0.05)
                            for p in (move.previous_pose.position, move.current_pose.position)]
            arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.05, 0.12, 0.15
            arrow.color = ColorRGBA(r=r, g=g, b=b, a=1.0)
        out.markers.append(arrow)
        box = Marker(header=header, ns=BOX_NAMESPACE, id=int(obj.id))
        label = Marker(header=header, ns=LABEL_NAMESPACE, id=int(obj.id))
        if obj.state == ObjectState.REMOVED:
            box.action = label.action = Marker.DELETE
            out.markers += [box, label]
            continue
        r, g, b = identity_color(obj.id)
        alpha = 0.8 if obj.state == ObjectState.PRESENT else 0.25
        box.type, box.action = Marker.CUBE, Marker.ADD
        box.pose = pose_to_msg(obj.pose)
        box.scale.x, box.scale.y, box.scale.z = (max(float(e), 1e-3) for e in obj.extents)
        box.color = ColorRGBA(r=r, g=g, b=b, a=alpha)
        box.lifetime = Duration()  # forever
        label.type, label.action = Marker.TEXT_VIEW_FACING, Marker.ADD
        label.pose = pose_to_msg(obj.pose)
        label.pose.position.z += 0.5 * float(obj.extents[2]) + 0.15
        label.scale.z = 0.15
        label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        label.text = f"{obj.class_name} #{obj.id}"
        if obj.state == ObjectState.UNOBSERVED:
            label.text += " (unobserved)"
        out.markers += [box, label]
    return out
