"""From network outputs to 4D instances (tracks) and persistent identities.

0. Object voxels are those the geometric rules of ``mapping/geometric.py``
   leave as objects (``structure="geometric"``, the default: they hold on
   real scans, where the network's structure classes do not), or those the
   network does not call wall, floor or ceiling (``"network"``). With
   geometric structure each object voxel also carries its component
   (connected object candidates of its epoch). Objects are named by the
   network (``classes="network"``) or by the geometric segmenter's cluster
   classifier (``"classifier"``, the default).
1. Object voxels of ALL epochs are clustered together with HDBSCAN (SSEN)
   in a union space of the instance embedding, the map position and the
   class probabilities (FreeGS), without the epoch: an object that stayed
   put is one cluster spanning the epochs, and a sofa against a cabinet is
   two.
2. A cluster can hold look-alikes side by side. Within each epoch it is split
   into spatially connected parts; parts of a size comparable to the largest
   are separate objects, smaller ones join the nearest of those. With
   geometric structure, parts in different components never join, and
   within a component, clusters of the main cluster's class and under
   ``fragment_share`` times its size are fragments that take its label (on
   real scans the embedding splits objects into pieces more often than it
   finds two touching ones).
   Components are chained across epochs by nearest centroid (Hungarian);
   each chain is a *track*, the 4D instance.
3. Objects that moved are in different clusters before and after. Tracks seen
   only in the newest epoch are linked to tracks not seen in it whose place
   the newest epoch saw: by their mean embeddings (what the cross-time
   contrastive loss trains), sizes and chromaticities; same class, cosine
   similarity above ``link_similarity``, shape difference under
   ``link_shape``, Hungarian.
4. ``reconcile`` gives tracks the persistent ids of the object memory: a track
   takes the id most of its points carried in the stored past epochs, each id
   going to at most one track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from stseg_ros.mapping.geometric import GeometricConfig, connected

STRUCTURE_SOURCES = ("network", "geometric")
CLASS_SOURCES = ("network", "classifier")


@dataclass(frozen=True)
class InstanceConfig:
    # what says wall/floor/ceiling and bounds objects: network or geometric (the
    # default: the network's structure classes do not carry over to real scans)
    structure: str = "geometric"
    # what names each object: network or classifier (the default: the geometric
    # segmenter's cluster classifier names real objects better than the network)
    classes: str = "classifier"
    min_cluster_size: int = 20      # voxels, HDBSCAN
    min_samples: int = 5
    max_fit: int = 12000            # voxels HDBSCAN sees; the rest join their nearest
    xyz_weight: float = 1.0         # union space: embedding units per metre...
    class_weight: float = 2.0       # ...and per unit of object-class probability
    link: float = 1.8               # voxels closer than this (in voxel units) connect
    min_component: int = 12         # voxels; smaller pieces join a neighbour or vanish
    split_share: float = 0.4        # a component this share of the largest is an object
    fragment_share: float = 0.4     # a cluster under this share of a component's largest
    link_similarity: float = 0.8    # cosine similarity of mean embeddings to link a move
    link_shape: float = 0.3         # and at most this shape difference (size and colour,
                                    # as association.moved_shape)
    fill_reach: float = 2.5         # voxel units, unclustered object voxels join within
    min_votes: float = 0.2          # share of a track's past points an id must hold
    score_voxels: float = GeometricConfig.score_voxels   # coverage 0.63 at this many voxels

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURE_SOURCES:
            raise ValueError(f"structure must be one of {', '.join(STRUCTURE_SOURCES)}, "
                             f"got {self.structure!r}")
        if self.classes not in CLASS_SOURCES:
            raise ValueError(f"classes must be one of {', '.join(CLASS_SOURCES)}, "
                             f"got {self.classes!r}")


def cluster_union(emb: np.ndarray, xyz: np.ndarray, probs: np.ndarray,
                  cfg: InstanceConfig = InstanceConfig(), seed: int = 0) -> np.ndarray:
    """Cluster label per voxel (-1: noise) in the union space of embedding,
    position (m) and class probabilities. HDBSCAN sees at most ``max_fit``
    voxels (a fixed random subset, with the minimum cluster size scaled to
    match); every other voxel takes the label of its nearest fitted voxel in
    that space."""
    from sklearn.cluster import HDBSCAN

    n = len(emb)
    if n < cfg.min_cluster_size:
        return np.full(n, -1, np.int64)
    space = np.concatenate([emb, xyz * cfg.xyz_weight, probs * cfg.class_weight],
                           axis=1).astype(np.float32)
    fit = np.arange(n)
    if n > cfg.max_fit:
        fit = np.sort(np.random.default_rng(seed).choice(n, cfg.max_fit, replace=False))
    size = max(5, round(cfg.min_cluster_size * len(fit) / n))
    labels_fit = HDBSCAN(min_cluster_size=size, min_samples=min(cfg.min_samples, size),
                         copy=True).fit_predict(space[fit])
    labels = np.full(n, -1, np.int64)
    labels[fit] = labels_fit
    if len(fit) < n:
        rest = np.setdiff1d(np.arange(n), fit)
        _, nearest = cKDTree(space[fit]).query(space[rest])
        labels[rest] = labels_fit[nearest]
    return labels


def absorb_fragments(cluster: np.ndarray, component: np.ndarray, share: float,
                     label: np.ndarray | None = None) -> np.ndarray:
    """Within each geometric ``component`` (-1: none), clusters smaller than
    ``share`` times its largest cluster there take that cluster's label, if
    their voxels mostly carry the same ``label`` (the class; None: always).
    A chair pushed under a desk keeps its own cluster, a piece of a desk
    whose embedding drifted does not."""
    out = cluster.copy()
    rows = np.flatnonzero((component >= 0) & (cluster >= 0))
    if len(rows) == 0:
        return out
    label = np.zeros(len(cluster), np.int64) if label is None else label
    pair, inverse, count = np.unique(np.stack([component[rows], cluster[rows]], 1), axis=0,
                                     return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    pair_label = np.array([np.bincount(label[rows[inverse == k]]).argmax()
                           for k in range(len(pair))])
    for comp in np.unique(pair[:, 0]):
        mine = np.flatnonzero(pair[:, 0] == comp)
        main = mine[np.argmax(count[mine])]
        small = mine[(count[mine] < share * count[main]) & (pair_label[mine] == pair_label[main])]
        out[rows[np.isin(inverse, small)]] = pair[main, 1]
    return out


def _parts(coords: np.ndarray, group: np.ndarray, reach: float) -> np.ndarray:
    """Connected part per voxel, voxels of different ``group`` never connecting."""
    if len(coords) == 0:
        return np.zeros(0, np.int64)
    apart = (group - group.min()) * (4 * reach + 4 + float(np.ptp(coords)))
    return connected(np.concatenate([coords, apart[:, None]], axis=1), reach)


def tracks_from_clusters(coords: np.ndarray, epoch: np.ndarray, cluster: np.ndarray,
                         cfg: InstanceConfig = InstanceConfig(),
                         pieces: np.ndarray | None = None) -> np.ndarray:
    """Track id per voxel (-1: none). ``coords`` (V, 3) voxel indices, ``epoch``
    (V,), ``cluster`` (V,) from ``cluster_union`` (-1 ignored). A cluster's
    spatially connected parts in an epoch are separate objects when comparable
    in size; smaller ones join the nearest of those. ``pieces`` (V,), the
    geometric components, keep parts in different components apart: each
    component holds at least one object of the cluster."""
    track = np.full(len(coords), -1, np.int64)
    next_track = 0
    for c in np.unique(cluster[cluster >= 0]):
        heads: list[tuple[int, np.ndarray]] = []       # (track, last centroid)
        for t in np.unique(epoch[cluster == c]):
            rows = np.flatnonzero((cluster == c) & (epoch == t))
            group = np.zeros(len(rows), np.int64) if pieces is None else pieces[rows]
            comp = _parts(coords[rows], group, cfg.link)
            ids, sizes = np.unique(comp, return_counts=True)
            big: list[int] = []
            for g in np.unique(group):                 # per geometric component
                mine = np.isin(ids, np.unique(comp[group == g]))
                floor = max(cfg.min_component, cfg.split_share * sizes[mine].max())
                keep = [int(i) for i, n in zip(ids[mine], sizes[mine], strict=True) if n >= floor]
                big += keep or [int(ids[mine][np.argmax(sizes[mine])])]
            cents = {i: coords[rows[comp == i]].mean(0) for i in big}
            home = {int(i): int(group[comp == i][0]) for i in ids}
            for i in ids:                  # small pieces join the nearest object of their group
                if int(i) not in big:
                    piece = coords[rows[comp == i]].mean(0)
                    near = [b for b in big if home[b] == home[int(i)]]
                    comp[comp == i] = min(near, key=lambda b: np.linalg.norm(piece - cents[b]))
            cents = [cents[i] for i in big]
            assigned = [-1] * len(big)
            if heads:
                cost = np.array([[np.linalg.norm(ct - h[1]) for h in heads] for ct in cents])
                for a, b in zip(*linear_sum_assignment(cost), strict=True):
                    assigned[a] = b
            for k, i in enumerate(big):
                if assigned[k] < 0:
                    heads.append((next_track, cents[k]))
                    assigned[k] = len(heads) - 1
                    next_track += 1
                tid = heads[assigned[k]][0]
                heads[assigned[k]] = (tid, cents[k])
                track[rows[comp == i]] = tid
    return track


def fill_unassigned(coords: np.ndarray, epoch: np.ndarray, track: np.ndarray,
                    wanted: np.ndarray, reach: float) -> np.ndarray:
    """Object voxels (``wanted``) left without a track take the track of the
    nearest tracked voxel of the same epoch within ``reach``."""
    track = track.copy()
    for t in np.unique(epoch[wanted]):
        have = np.flatnonzero((epoch == t) & (track >= 0))
        need = np.flatnonzero((epoch == t) & wanted & (track < 0))
        if len(have) == 0 or len(need) == 0:
            continue
        dist, idx = cKDTree(coords[have]).query(coords[need], distance_upper_bound=reach)
        hit = np.isfinite(dist)
        track[need[hit]] = track[have[idx[hit]]]
    return track


def place_seen(coords: np.ndarray, epoch: np.ndarray, rows: np.ndarray, newest: int,
               share: float = 0.5) -> bool:
    """Whether epoch ``newest`` saw the place of voxels ``rows`` (of an earlier
    epoch): it has voxels in at least ``share`` of their (x, y) columns."""
    columns = {tuple(c) for c in coords[rows, :2].tolist()}
    now = {tuple(c) for c in coords[epoch == newest, :2].tolist()}
    return len(columns & now) >= share * len(columns)


def _box_and_colour(coords: np.ndarray, colour: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A track's footprint sides (long, short: along its principal axes, so a
    turn does not change them), height, and chromaticity (mean colour over its
    sum), from its voxels. ``colour`` is the network's colour input, already
    scaled to each scan's brightness; chromaticity also drops what is left of
    the light on the object itself, which changes with the revisit's lighting
    and with where the object now stands (a pillow's colour moved 0.16 between
    two revisits of a generated room, its chromaticity 0.03)."""
    xy = coords[rows, :2].astype(float)
    xy -= xy.mean(axis=0)
    _, vectors = np.linalg.eigh(xy.T @ xy + np.eye(2) * 1e-9)
    sides = np.sort(np.ptp(xy @ vectors, axis=0) + 1.0)[::-1]
    height = float(np.ptp(coords[rows, 2]) + 1.0)
    rgb = np.clip(colour[rows].mean(axis=0) + 0.5, 1e-3, None)     # network input back to >= 0
    return np.concatenate([sides, [height], rgb / rgb.sum()])


def shape_difference(a: np.ndarray, b: np.ndarray) -> float:
    """``_box_and_colour`` descriptors compared as the geometric association
    compares segments (``mapping.association.shape_distance``): the mean
    relative difference of the three sizes plus twice the colour
    (chromaticity) difference."""
    size = np.abs(a[:3] - b[:3]) / np.maximum(np.maximum(a[:3], b[:3]), 1.0)
    return float(size.mean() + np.abs(a[3:] - b[3:]).mean() * 2.0)


def link_moved(track: np.ndarray, epoch: np.ndarray, emb: np.ndarray, cls: np.ndarray,
               newest: int, coords: np.ndarray,
               cfg: InstanceConfig = InstanceConfig(),
               colour: np.ndarray | None = None) -> np.ndarray:
    """Join tracks seen only in epoch ``newest`` to tracks not seen in it whose
    place that epoch saw (so they left it: moved) when they agree: same class
    (``cls`` per track), cosine similarity of mean embeddings at least
    ``link_similarity``, and, given ``colour`` per voxel, box sizes and
    chromaticities within ``link_shape`` of each other (as last seen). The
    pairs are chosen one-to-one (Hungarian) by embedding dissimilarity plus
    shape difference, so two boxes that look alike to the embedding go to the
    one of the right size and hue. A track whose place was not seen may simply
    be out of view, and is not a candidate."""
    ids = np.unique(track[track >= 0])
    if len(ids) < 2:
        return track
    seen_now = {int(t) for t in np.unique(track[(epoch == newest) & (track >= 0)])}
    seen_before = {int(t) for t in np.unique(track[(epoch != newest) & (track >= 0)])}
    fresh = sorted(seen_now - seen_before)
    gone = [t for t in sorted(seen_before - seen_now)
            if place_seen(coords, epoch, np.flatnonzero(track == t), newest)]
    if not fresh or not gone:
        return track
    keep = track >= 0
    mean = np.zeros((int(ids.max()) + 1, emb.shape[1]))
    np.add.at(mean, track[keep], emb[keep])
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-9)
    sim = mean[fresh] @ mean[gone].T
    allowed = (cls[fresh][:, None] == cls[gone][None, :]) & (sim >= cfg.link_similarity)
    shape = np.zeros_like(sim)
    if colour is not None:
        def last_seen(t: int) -> np.ndarray:
            rows = np.flatnonzero(track == t)
            return _box_and_colour(coords, colour, rows[epoch[rows] == epoch[rows].max()])

        now, before = [last_seen(t) for t in fresh], [last_seen(t) for t in gone]
        shape = np.array([[shape_difference(a, b) for b in before] for a in now])
        allowed &= shape <= cfg.link_shape
    cost = np.where(allowed, (1.0 - sim) + shape, 1e6)
    out = track.copy()
    for a, b in zip(*linear_sum_assignment(cost), strict=True):
        if allowed[a, b]:
            out[track == fresh[a]] = gone[b]
    return out


def reconcile(track_of_point: np.ndarray, stored_id: np.ndarray, tracks: list[int],
              min_votes: float = 0.2) -> dict[int, int]:
    """Persistent id per track, from the past epochs' points: ``track_of_point``
    and ``stored_id`` are per past point (-1 / 0 where none). A track takes the
    id that most of its past points carry (at least ``min_votes`` of them);
    ids are unique (Hungarian over the vote counts)."""
    order = np.asarray(sorted(tracks), np.int64)
    if len(order) == 0:
        return {}
    row = np.searchsorted(order, track_of_point).clip(max=len(order) - 1)
    member = (track_of_point >= 0) & (order[row] == track_of_point)
    keep = member & (stored_id > 0)
    if not keep.any():
        return {}
    ids, col = np.unique(stored_id[keep], return_inverse=True)
    votes = np.zeros((len(order), len(ids)))
    np.add.at(votes, (row[keep], col), 1)
    totals = np.bincount(row[member], minlength=len(order))
    rows, cols = linear_sum_assignment(-votes)
    return {int(order[r]): int(ids[c]) for r, c in zip(rows, cols, strict=True)
            if votes[r, c] > 0 and votes[r, c] >= min_votes * totals[r]}
