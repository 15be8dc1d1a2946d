"""The map's static structure that revisits register to: what two revisits
agree on stays, what stood there once or noise added goes, and it stops
growing with the revisits."""

from __future__ import annotations

import numpy as np

from stseg_ros.mapping.structure import CellTally, StaticStructure


def _plane(rng, lo, hi, n, z=0.0, noise=0.0):
    xy = rng.uniform(lo, hi, (n, 2))
    return np.c_[xy, z + rng.normal(0.0, noise, n) if noise else np.full(n, z)]


def _wall(rng, x, y0, y1, n):
    return np.c_[np.full(n, x), rng.uniform(y0, y1, n), rng.uniform(0.0, 2.2, n)]


def test_cells_are_counted_once_per_revisit():
    tally = CellTally(0.1)
    tally.add(np.array([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.5, 0.0, 0.0]]))
    tally.add(np.array([[0.01, 0.01, 0.0], [1.0, 1.0, 1.0]]))
    assert len(tally) == 3
    assert tally.count(np.array([[0.02, 0.0, 0.0], [0.55, 0.0, 0.0], [1.0, 1.0, 1.0],
                                 [3.0, 3.0, 3.0]])).tolist() == [2, 1, 1, 0]


def test_clutter_seen_once_leaves_and_a_place_one_revisit_saw_stays():
    """Five revisits of a room: the first also saw a stack of boxes nobody
    segmented (gone later, its floor seen bare) and a corridor no later
    revisit looked into. The boxes leave the structure; the floor, the wall
    and the corridor stay."""
    rng = np.random.default_rng(3)
    structure = StaticStructure(0.025)
    union = StaticStructure(0.025, agree=0.0)        # registration.structure_agreement 0
    for revisit in range(5):
        parts = [_plane(rng, (0, 0), (4, 4), 60_000), _wall(rng, 0.0, 0.0, 4.0, 30_000)]
        if revisit == 0:
            corridor = _plane(rng, (4.1, 1), (6, 2), 8_000)
            parts += [corridor,
                      np.c_[rng.uniform(2.0, 2.4, (6_000, 2)), rng.uniform(0.1, 0.6, 6_000)]]
        xyz = np.concatenate(parts).astype(np.float32)
        structure.add(xyz, xyz)
        union.add(xyz, xyz)
    assert len(union.points()) == len(union)          # every cell any revisit saw
    kept = structure.points()
    boxes = (np.abs(kept[:, :2] - 2.2).max(axis=1) < 0.2) & (kept[:, 2] > 0.1)
    assert not boxes.any()
    once = CellTally(0.025)
    once.add(corridor)
    assert (kept[:, 0] > 4.1).sum() == len(once)                    # all the corridor
    assert (kept[:, 0] < 0.025).sum() > 0.95 * (4.0 * 2.2 / 0.025 ** 2)   # the wall
    assert ((kept[:, 0] < 4) & (kept[:, 2] < 0.025)).sum() > 0.95 * (4 * 4 / 0.025 ** 2)


def test_noise_thickens_the_tallies_but_not_the_structure():
    """A floor seen thirty times with 1 cm of depth noise: every revisit puts
    points into cells no other did, so the union of what was seen keeps
    growing; the structure handed to registration does not."""
    rng = np.random.default_rng(4)
    structure = StaticStructure(0.025)
    sizes = {}
    for revisit in range(1, 31):
        xyz = _plane(rng, (0, 0), (4, 4), 40_000, z=0.012, noise=0.01).astype(np.float32)
        structure.add(xyz, xyz)
        sizes[revisit] = (len(structure), len(structure.points()))
    assert sizes[30][0] > 1.2 * sizes[5][0]            # the union grew
    assert sizes[30][1] <= 1.02 * sizes[5][1]          # the structure did not
    assert sizes[30][1] >= 0.95 * (4 * 4 / 0.025 ** 2)  # and still covers the floor
