"""NYU40 class table, so ScanNet and 3RScan labels map directly onto class ids."""

from __future__ import annotations

NYU40_CLASSES: dict[int, str] = {
    1: "wall", 2: "floor", 3: "cabinet", 4: "bed", 5: "chair", 6: "sofa",
    7: "table", 8: "door", 9: "window", 10: "bookshelf", 11: "picture",
    12: "counter", 13: "blinds", 14: "desk", 15: "shelves", 16: "curtain",
    17: "dresser", 18: "pillow", 19: "mirror", 20: "floor mat", 21: "clothes",
    22: "ceiling", 23: "books", 24: "refrigerator", 25: "television",
    26: "paper", 27: "towel", 28: "shower curtain", 29: "box", 30: "whiteboard",
    31: "person", 32: "night stand", 33: "toilet", 34: "sink", 35: "lamp",
    36: "bathtub", 37: "bag", 38: "otherstructure", 39: "otherfurniture",
    40: "otherprop",
}

_IDS_BY_NAME = {name: cid for cid, name in NYU40_CLASSES.items()}


def class_name(class_id: int) -> str:
    """Name of an NYU40 class id; ``"unknown"`` for 0 or ids outside the table."""
    return NYU40_CLASSES.get(int(class_id), "unknown")


def class_id(name: str) -> int:
    """NYU40 id of a class name (case-insensitive); raises ValueError if unknown."""
    key = name.strip().lower().replace("_", " ")
    if key not in _IDS_BY_NAME:
        raise ValueError(f"unknown NYU40 class name {name!r}")
    return _IDS_BY_NAME[key]


# Parts of the building: a door swings and a window opens, but neither moves or
# changes identity, so neither is ever reported as moved.
FIXTURES = ("door", "window")


def is_fixture(class_id: int) -> bool:
    """Whether an NYU40 class is a fixture (``FIXTURES``)."""
    return class_name(class_id) in FIXTURES
