"""Raw annotation labels ("office chair", "kitchen cabinets") to NYU40 class ids.

With ScanNet's ``scannetv2-labels.combined.tsv`` (columns ``raw_category`` and
``nyu40id``) the mapping is ScanNet's own. Without it (or for a label the table
lacks), a label that is an NYU40 name maps to that class, a few dozen common
raw labels map through the synonym table below, and anything else is
``otherprop`` (40) and counted, so the import report says how much was guessed.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from stseg_ros.core.classes import NYU40_CLASSES, class_id
from stseg_ros.core.layout import FormatError

OTHERPROP = class_id("otherprop")

# common ScanNet/3RScan raw labels that are not NYU40 names -> NYU40 name
SYNONYMS: dict[str, str] = {
    # seating
    "office chair": "chair", "armchair": "chair", "arm chair": "chair",
    "sofa chair": "chair", "folded chair": "chair", "dining chair": "chair",
    "stool": "chair", "couch": "sofa", "loveseat": "sofa",
    # tables and desks
    "coffee table": "table", "end table": "table", "dining table": "table",
    "side table": "table", "kitchen table": "table", "round table": "table",
    "nightstand": "night stand", "night table": "night stand",
    "kitchen counter": "counter", "bathroom counter": "counter",
    # storage
    "kitchen cabinet": "cabinet", "kitchen cabinets": "cabinet", "file cabinet": "cabinet",
    "bathroom cabinet": "cabinet", "cabinets": "cabinet", "shelf": "shelves",
    "bookshelves": "bookshelf", "bookcase": "bookshelf", "book": "books",
    "tv stand": "otherfurniture", "ottoman": "otherfurniture", "bench": "otherfurniture",
    # beds and textiles
    "mattress": "bed", "cushion": "pillow", "rug": "floor mat", "mat": "floor mat",
    "doormat": "floor mat", "jacket": "clothes", "shirt": "clothes",
    "curtains": "curtain", "towels": "towel",
    # appliances and electronics
    "fridge": "refrigerator", "mini fridge": "refrigerator", "tv": "television",
    # walls, doors, windows
    "closet door": "door", "doorframe": "door", "shower door": "door",
    "bathroom stall door": "door", "shower wall": "wall", "closet wall": "wall",
    "stairs": "otherstructure", "column": "otherstructure", "pillar": "otherstructure",
    # pictures and boards
    "poster": "picture", "painting": "picture", "frame": "picture",
    "blackboard": "whiteboard", "bulletin board": "whiteboard",
    # bags
    "backpack": "bag", "purse": "bag", "paper bag": "bag", "suitcase": "bag",
    # bathroom
    "shower curtain rod": "otherprop", "bath tub": "bathtub", "tub": "bathtub",
}


def normalise(label: str) -> str:
    return " ".join(str(label).strip().lower().replace("_", " ").split())


class LabelMapper:
    """Maps raw labels to NYU40 ids and counts the labels it had to guess."""

    def __init__(self, table: dict[str, int] | None = None, source: str = "built-in") -> None:
        self.table = table
        self.source = source
        self.unknown: Counter[str] = Counter()

    @classmethod
    def from_tsv(cls, path) -> LabelMapper:
        """ScanNet's label table: ``raw_category`` -> ``nyu40id``."""
        path = Path(path)
        if not path.is_file():
            raise FormatError(f"{path}: missing")
        table: dict[str, int] = {}
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t")
            if not reader.fieldnames or not {"raw_category", "nyu40id"} <= set(reader.fieldnames):
                raise FormatError(f"{path}: expected tab-separated columns raw_category and "
                                  "nyu40id (ScanNet's scannetv2-labels.combined.tsv)")
            for n, row in enumerate(reader, start=2):
                try:
                    cid = int(row["nyu40id"])
                except (TypeError, ValueError):
                    raise FormatError(f"{path}: line {n}: nyu40id {row['nyu40id']!r} is not "
                                      "a number") from None
                if cid not in NYU40_CLASSES and cid != 0:
                    raise FormatError(f"{path}: line {n}: nyu40id {cid} is not an NYU40 id")
                table[normalise(row["raw_category"])] = cid
        return cls(table, str(path))

    def __call__(self, label: str) -> int:
        key = normalise(label)
        if self.table is not None and key in self.table:
            return self.table[key]
        # not in the table (or no table): NYU40 names, synonyms, plurals
        for name in (key, SYNONYMS.get(key), key[:-1] if key.endswith("s") else None):
            if name is None:
                continue
            try:
                return class_id(name)
            except ValueError:
                pass
        self.unknown[key] += 1
        return OTHERPROP
