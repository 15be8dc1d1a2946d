"""Object queries (by class, id, region and state), shared by the object memory,
the query service and the CLI."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stseg_ros.core.records import ObjectRecord, ObjectState


@dataclass
class ObjectQuery:
    """Filters combined with AND; an empty filter matches everything."""

    class_ids: set[int] = field(default_factory=set)
    class_names: set[str] = field(default_factory=set)
    ids: set[int] = field(default_factory=set)
    states: set[ObjectState] = field(default_factory=set)
    region: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None

    def __post_init__(self) -> None:
        self.class_names = {name.strip().lower() for name in self.class_names}
        self.states = {ObjectState(s) for s in self.states}
        if self.region is not None:
            lo, hi = self.region
            if len(lo) != 3 or len(hi) != 3:
                raise ValueError("region needs two 3-D corners (min, max)")
            if any(a > b for a, b in zip(lo, hi, strict=True)):
                raise ValueError(f"region min {tuple(lo)} exceeds max {tuple(hi)}")

    def matches(self, obj: ObjectRecord) -> bool:
        """True if ``obj`` passes every filter that is set."""
        if self.class_ids and obj.class_id not in self.class_ids:
            return False
        if self.class_names and obj.class_name.lower() not in self.class_names:
            return False
        if self.ids and obj.id not in self.ids:
            return False
        if self.states and obj.state not in self.states:
            return False
        if self.region is not None:
            lo, hi = self.region
            if not all(a <= p <= b for a, p, b in zip(lo, obj.pose.position, hi, strict=True)):
                return False
        return True


def filter_objects(objects: Iterable[ObjectRecord], query: ObjectQuery) -> list[ObjectRecord]:
    """Objects matching ``query``, sorted by persistent id."""
    return sorted((o for o in objects if query.matches(o)), key=lambda o: o.id)
