"""The geometric split holds where real reconstructions differ from clean scans:
bent floors, partial walls, objects against walls, uneven point density; and
the learned segmenter can take its structure from it."""

from __future__ import annotations

import numpy as np
import pytest

from stseg_ros.core.classes import class_id
from stseg_ros.learned.instances import InstanceConfig, absorb_fragments, tracks_from_clusters
from stseg_ros.mapping.geometric import FLOOR, WALL, split_scan

ROOM = 4.0          # m, square room with walls at x = 0 and y = 0 (the others unseen)
CABINET, BOX = 101, 102     # truth labels of the two objects


def _surface(rng, n, corner, u, v):
    a, b = rng.uniform(0, 1, (2, n))
    return np.asarray(corner) + a[:, None] * np.asarray(u) + b[:, None] * np.asarray(v)


def _box(rng, lo, hi, per_m2=2500, against_wall=False):
    """The visible faces of an axis-aligned box: no bottom, and no back (-x)
    when it stands against a wall."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    d = hi - lo
    faces = [(lo + [0, 0, d[2]], [d[0], 0, 0], [0, d[1], 0]),           # top
             (lo, [d[0], 0, 0], [0, 0, d[2]]), (lo + [0, d[1], 0], [d[0], 0, 0], [0, 0, d[2]]),
             (lo, [0, d[1], 0], [0, 0, d[2]]), (lo + [d[0], 0, 0], [0, d[1], 0], [0, 0, d[2]])]
    parts = []
    for corner, u, v in faces[:3] + faces[4:] if against_wall else faces:
        area = np.linalg.norm(np.cross(u, v))
        parts.append(_surface(rng, max(int(area * per_m2), 20), corner, u, v))
    return np.concatenate(parts)


def _room(seed=0, density=1.0):
    """A bent floor (±6 cm over the room), two partial walls 1.2 m tall, a
    cabinet against the wall at x = 0 and a box in the middle; per-point truth."""
    rng = np.random.default_rng(seed)
    n = int(60_000 * density)
    floor = _surface(rng, n, (0, 0, 0), (ROOM, 0, 0), (0, ROOM, 0))
    floor[:, 2] = 0.06 * np.sin(floor[:, 0] * 0.8) * np.cos(floor[:, 1] * 0.6)
    walls = np.concatenate([_surface(rng, int(12_000 * density), (0, 0, 0), (0, ROOM, 0),
                                     (0, 0, 1.2)),
                            _surface(rng, int(12_000 * density), (0, 0, 0), (ROOM, 0, 0),
                                     (0, 0, 1.2))])
    cabinet = _box(rng, (0.02, 1.5, 0.05), (0.6, 2.5, 0.9), 2500 * density, True)
    box = _box(rng, (2.0, 2.0, 0.05), (2.6, 2.5, 0.5), 2500 * density)
    xyz = np.concatenate([floor, walls, cabinet, box]).astype(np.float32)
    truth = np.concatenate([np.full(len(floor), FLOOR), np.full(len(walls), WALL),
                            np.full(len(cabinet), CABINET), np.full(len(box), BOX)])
    return xyz, truth


def _object_recovered(split, truth, label):
    """The cluster holding most of object ``label`` covers 80 % of it and is
    80 % made of it."""
    mine = truth == label
    ids, counts = np.unique(split.clusters[mine], return_counts=True)
    best = ids[np.argmax(counts)]
    if best == 0:
        return False
    cluster = split.clusters == best
    return counts.max() >= 0.8 * mine.sum() and (truth[cluster] == label).mean() >= 0.8


def test_bent_floor_partial_walls_and_a_cabinet_against_a_wall():
    xyz, truth = _room()
    split = split_scan(xyz)
    assert (split.structure[truth == FLOOR] == FLOOR).mean() > 0.95
    assert (split.structure[truth == WALL] == WALL).mean() > 0.8
    # the cabinet's front has its own top behind it: an object, not a wall
    assert (split.structure[truth == CABINET] == WALL).mean() < 0.1
    assert _object_recovered(split, truth, CABINET) and _object_recovered(split, truth, BOX)


def test_a_sparse_sample_of_the_same_room_splits_the_same_way():
    xyz, truth = _room()
    keep = np.random.default_rng(1).random(len(xyz)) < 0.4        # 40 % of the points
    split = split_scan(xyz[keep])
    assert all(_object_recovered(split, truth[keep], o) for o in (CABINET, BOX))
    assert len(np.unique(split.clusters[split.clusters > 0])) == 2


def test_fragments_of_one_class_join_their_component_but_a_chair_by_a_desk_stays():
    component = np.array([0] * 10 + [1] * 6)
    cluster = np.array([5] * 7 + [6] * 3 + [7] * 4 + [8] * 2)
    label = np.array([1] * 7 + [1] * 3 + [2] * 4 + [3] * 2)    # class per voxel
    out = absorb_fragments(cluster, component, 0.5, label)
    assert out[:10].tolist() == [5] * 10                   # same class, small: a fragment
    assert out[10:].tolist() == [7] * 4 + [8] * 2          # other class: its own object


def test_one_cluster_in_two_components_is_two_objects():
    coords = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [4, 0, 0], [5, 0, 0]])
    epoch = np.zeros(5, np.int64)
    cluster = np.zeros(5, np.int64)
    cfg = InstanceConfig(min_component=1)
    # connected as one piece, but the geometric split put a boundary in it
    assert len(set(tracks_from_clusters(coords, epoch, cluster, cfg).tolist())) == 2
    joined = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0]])
    pieces = np.array([0, 0, 0, 1, 1])
    assert len(set(tracks_from_clusters(joined, epoch, cluster, cfg, pieces).tolist())) == 2
    assert len(set(tracks_from_clusters(joined, epoch, cluster, cfg).tolist())) == 1


def test_learned_segmenter_takes_walls_and_floors_from_the_geometric_rules():
    from stseg_ros.learned.segmenter import LearnedSegmenter

    xyz, truth = _room()
    rgb = np.full((len(xyz), 3), 128, np.uint8)
    seg = LearnedSegmenter(joint=False, instances=InstanceConfig(structure="geometric"))
    out = seg.segment(xyz, rgb)
    assert np.array_equal(out.structure, split_scan(xyz).structure)
    assert (out.structure[truth == WALL] == class_id("wall")).mean() > 0.8
    assert out.segments, "the cabinet and the box are objects"


def test_learned_segmenter_can_name_objects_with_the_cluster_classifier():
    """classes=classifier (the default): the same objects as with the
    network's classes, named by the forest the geometric segmenter uses, which
    carries over to real scans better than the network."""
    from stseg_ros.learned.segmenter import LearnedSegmenter
    from stseg_ros.mapping.classifier import ClusterClassifier

    xyz, _ = _room()
    rgb = np.full((len(xyz), 3), 128, np.uint8)
    named = LearnedSegmenter(joint=False, instances=InstanceConfig(
        structure="geometric", classes="classifier")).segment(xyz, rgb)
    plain = LearnedSegmenter(joint=False, instances=InstanceConfig(
        structure="geometric", classes="network")).segment(xyz, rgb)
    assert [len(s.points) for s in named.segments] == [len(s.points) for s in plain.segments]
    assert named.objectness == plain.objectness       # still the network's
    forest, _, sure = ClusterClassifier.load().object_class(
        np.stack([s.features for s in named.segments]))
    assert named.class_ids == forest.tolist()
    assert all(0 < s <= p for s, p in zip(named.scores, sure, strict=True))


def test_an_unknown_structure_or_class_source_is_refused():
    with pytest.raises(ValueError, match="network, geometric"):
        InstanceConfig(structure="planes")
    with pytest.raises(ValueError, match="network, classifier"):
        InstanceConfig(classes="words")


def test_a_static_room_revisited_keeps_its_objects_ids_with_geometric_structure():
    """The second revisit of an unchanged room hands its objects the ids their
    stored points carry."""
    from stseg_ros.learned.segmenter import LearnedSegmenter
    from stseg_ros.memory.store import EpochPoints

    xyz, _ = _room(seed=0)
    rgb = np.full((len(xyz), 3), 128, np.uint8)
    seg = LearnedSegmenter(joint=True, instances=InstanceConfig(structure="geometric"))
    first = seg.segment(xyz, rgb)
    ids = np.zeros(len(xyz), np.int32)
    for k, s in enumerate(first.segments, start=1):
        ids[s.points] = k
    stored = EpochPoints(xyz, rgb, ids, np.zeros(len(xyz), np.int32))
    again, _ = _room(seed=1)                         # the same room, scanned again
    second = seg.segment(again.astype(np.float32), np.full((len(again), 3), 128, np.uint8),
                         history=[stored])
    big = [i for i, s in zip(second.identities, second.segments, strict=True)
           if len(s.points) > 2000]
    assert big and all(i > 0 for i in big), second.identities


def test_clusters_the_classifier_doubts_are_kept_and_ranked_by_how_whole_they_look():
    from stseg_ros.mapping.classifier import ClusterClassifier
    from stseg_ros.mapping.segmenter import GeometricSegmenter

    # a forest of one leaf that calls every cluster 70 % "not an object": on real
    # scans its doubt is often wrong, so the clusters stay, with a low score
    doubtful = ClusterClassifier(np.array([0, class_id("cabinet")]), np.array([0]),
                                 np.array([-1]), np.array([0.0]), np.array([-1]),
                                 np.array([-1]), np.array([[0.7, 0.3]]))
    xyz, truth = _room()
    seg = GeometricSegmenter(classifier=doubtful).segment(xyz, np.full((len(xyz), 3), 128,
                                                                      np.uint8))
    assert len(seg.segments) >= 2
    assert set(seg.class_ids) == {class_id("cabinet")}
    assert seg.scores == pytest.approx([0.3] * len(seg.segments))     # P(cabinet)
    owner = [np.bincount(truth[s.points]).argmax() for s in seg.segments]
    objectness = dict(zip(owner, seg.objectness, strict=True))
    assert 0 < objectness[BOX] < objectness[CABINET] < 0.3    # the smaller box ranks lower
