"""The long-term mapper: identities across epochs, visibility-aware changes, and
`stseg run` end to end (predictions, memory, restart)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.cli import main
from stseg_ros.core.pointcloud import planar_pose, transform_points
from stseg_ros.mapping.association import EmptyPlaces, Known, associate, place_empty
from stseg_ros.mapping.drift import FusedScan
from stseg_ros.mapping.geometric import describe, estimate_normals
from stseg_ros.mapping.pipeline import Mapper
from stseg_ros.mapping.segmenter import make_segmenter
from stseg_ros.memory import ObjectMemory


def _box(centre, size, rng, n=1500):
    """Points on the faces of an axis-aligned box standing on the floor."""
    pts = rng.random((n, 3)) * size + np.array([centre[0] - size[0] / 2,
                                                centre[1] - size[1] / 2, 0.0])
    face = rng.integers(0, 5, n)
    for axis, side in ((0, 0), (0, 1), (1, 0), (1, 1), (2, 1)):
        k = face == axis * 2 + side if axis < 2 else face == 4
        pts[k, axis] = (centre[axis] - size[axis] / 2 + side * size[axis]) if axis < 2 \
            else size[2]
    return pts


def _floor(rng, lo=(-1.0, -1.0), hi=(5.0, 5.0), n=40_000):
    return np.c_[rng.uniform(lo[0], hi[0], n), rng.uniform(lo[1], hi[1], n), np.zeros(n)]


def _scene(objects, rng):
    """Scan of a floor with boxes; returns xyz, rgb and the point indices of each box."""
    parts, members, start = [_floor(rng)], [], 40_000
    colours = [np.full((40_000, 3), 120)]
    for centre, size, colour in objects:
        pts = _box(centre, size, rng)
        members.append(np.arange(start, start + len(pts)))
        start += len(pts)
        parts.append(pts)
        colours.append(np.tile(colour, (len(pts), 1)))
    xyz = np.concatenate(parts).astype(np.float32)
    return xyz, np.concatenate(colours).astype(np.uint8), members


def _segments(xyz, rgb, members):
    normals = estimate_normals(xyz, 0.08)
    return [describe(xyz, rgb, normals, m) for m in members]


CHAIR, TABLE = ((0.5, 0.5, 0.9), (200, 30, 30)), ((1.6, 0.8, 0.75), (90, 60, 30))


def _known_chair_and_table(rng):
    """A chair (object 1, class 5) at (1, 1) and a table (object 2, class 7) at (3, 3)."""
    xyz, rgb, members = _scene([((1, 1), *CHAIR), ((3, 3), *TABLE)], rng)
    before = _segments(xyz, rgb, members)
    return [Known(1, before[0], 5, xyz[members[0]]), Known(2, before[1], 7, xyz[members[1]])]


def test_static_objects_keep_ids_and_a_moved_one_is_found_by_shape():
    rng = np.random.default_rng(0)
    known = _known_chair_and_table(rng)
    xyz1, rgb1, m1 = _scene([((1, 3.5), *CHAIR), ((3, 3), *TABLE)], rng)  # the chair moved
    now = _segments(xyz1, rgb1, m1)
    assoc = associate(now, [5, 7], xyz1, known)
    assert assoc.matched == {0: 1, 1: 2}
    assert assoc.moved == {1} and not assoc.new and not assoc.missing


def _turned(xyz, centre, degrees):
    """``xyz`` turned about the vertical through ``centre`` (x, y)."""
    turn = planar_pose(*centre, 0.0) @ planar_pose(0.0, 0.0, np.radians(degrees)) \
        @ planar_pose(*-centre, 0.0)
    return transform_points(turn, xyz)


def test_a_move_is_measured_by_aligning_points_not_by_centroids():
    rng = np.random.default_rng(2)
    table = ((1.6, 0.8, 0.75), (90, 60, 30))
    xyz0, rgb0, m0 = _scene([((2, 2), *table)], rng)
    known = [Known(1, _segments(xyz0, rgb0, m0)[0], 7, xyz0[m0[0]])]

    def moved(xyz, members):
        seg = _segments(xyz, np.full((len(xyz), 3), (90, 60, 30), np.uint8), [members])
        assoc = associate(seg, [7], xyz, known)
        assert assoc.matched == {0: 1}
        return bool(assoc.moved)

    xyz1, _, m1 = _scene([((2, 2), *table)], rng)
    half = m1[0][xyz1[m1[0], 0] > 2.1]            # seen from one end only: centroid 0.45 m off
    assert not moved(xyz1, half)
    shifted = xyz1.copy()
    shifted[m1[0], 0] += 0.3                      # pushed 0.3 m, still overlapping its place
    assert moved(shifted, m1[0])
    assert moved(_turned(xyz1, np.array([2.0, 2.0]), 30.0), m1[0])
    assert not moved(_turned(xyz1, np.array([2.0, 2.0]), 5.0), m1[0])
    assert moved(_turned(xyz1, np.array([2.0, 2.0]), 20.0), m1[0])


def test_a_small_object_turned_by_icp_noise_has_not_moved():
    """A 20 cm lamp seen again, turned 20 degrees about its own axis: its ends
    move 2 cm, which alignment noise makes as easily as a hand does."""
    rng = np.random.default_rng(6)
    lamp = ((0.2, 0.08, 0.3), (220, 220, 200))
    xyz0, rgb0, m0 = _scene([((2, 2), *lamp)], rng)
    known = [Known(1, _segments(xyz0, rgb0, m0)[0], 35, xyz0[m0[0]])]
    xyz1, rgb1, m1 = _scene([((2, 2), *lamp)], rng)
    turned = _turned(xyz1, np.array([2.0, 2.0]), 20.0)
    assoc = associate(_segments(turned, rgb1, m1), [35], turned, known)
    assert assoc.matched == {0: 1} and not assoc.moved


def test_an_object_whose_place_is_seen_empty_is_found_moved_even_when_partly_seen():
    rng = np.random.default_rng(3)
    cabinet = ((1.0, 0.5, 1.2), (40, 90, 160))
    xyz0, rgb0, m0 = _scene([((1, 1), *cabinet)], rng)
    known = [Known(1, _segments(xyz0, rgb0, m0)[0], 3, xyz0[m0[0]])]
    xyz1, rgb1, m1 = _scene([((3.5, 3.5), *cabinet)], rng)
    corner = m1[0][(xyz1[m1[0], 0] > 3.6) & (xyz1[m1[0], 2] > 0.5)]   # a partial view
    seg = _segments(xyz1, rgb1, [corner])
    plain = associate(seg, [3], xyz1, known)
    assert plain.new == [0] and plain.missing == [1]    # too unlike to match by shape
    vacated = associate(seg, [3], xyz1, known, seen_now=EmptyPlaces(xyz1))
    assert vacated.matched == {0: 1} and vacated.moved == {1}


def test_a_missing_object_is_removed_only_where_its_place_was_seen():
    rng = np.random.default_rng(1)
    xyz, rgb, members = _scene([((1, 1), (0.5, 0.5, 0.9), (200, 30, 30))], rng)
    chair = _segments(xyz, rgb, members)[0]
    empty_floor = _floor(rng)                            # the chair is gone, floor seen
    assert place_empty(chair, empty_floor)
    elsewhere = _floor(rng, lo=(3.0, 3.0), hi=(5.0, 5.0))   # this revisit never went there
    assert not place_empty(chair, elsewhere)
    assert not place_empty(chair, xyz)                   # the chair is still standing there


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    generate_dataset(root / "ds", GenerateConfig(seed=1, revisits=2, frames=0), progress=False)
    assert main(["run", str(root / "ds"), "--out", str(root / "pred")]) == 0
    return root


def test_run_writes_predictions_that_eval_scores(mapped, capsys):
    out = mapped / "metrics.json"
    assert main(["eval", str(mapped / "ds"), str(mapped / "pred"), "--json", str(out),
                 "--quiet"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["reg_rot_err_deg"] < 2.0 and metrics["reg_trans_err_m"] < 0.05
    assert metrics["AP25"] > 0.2 and metrics["t_AP25"] > 0.1   # the baseline finds objects
    with ObjectMemory(mapped / "pred" / "scene_000" / "memory.db") as memory:
        assert memory.epoch_indices() == [0, 1]
        assert all(e.registered for e in memory.epochs())
        assert len(memory.objects()) >= 5


def test_eval_lists_each_change_event_and_calibration_fits_on_them(mapped, capsys, tmp_path):
    from stseg_ros.mapping.confidence import ConfidenceModel

    out = tmp_path / "metrics.json"
    capsys.readouterr()
    assert main(["eval", str(mapped / "ds"), str(mapped / "pred"), "--changes", "--quiet",
                 "--json", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " epoch 1: " in line]
    details = json.loads(out.read_text())["details"]
    counts = details["changes"]
    assert len(lines) == sum(counts.values()) > 0          # every event, one line each
    assert sum(" missed " in line for line in lines) == counts["false_negatives"]
    assert sum(": true " in line for line in lines) == counts["true_positives"]
    # each predicted event carries the confidence the mapper gave it
    assert all(v["confidence"] is not None for v in details["change_events"]
               if v["outcome"] != "missed")
    model_file = tmp_path / "confidence.json"
    assert main(["calibrate-changes", str(mapped / "ds"), str(mapped / "pred"),
                 "--out", str(model_file)]) == 0
    card = json.loads(capsys.readouterr().out.split("\nwrote ")[0])
    scored = [v for v in details["change_events"] if v["outcome"] != "missed"]
    assert sum(c["real"] + c["false"] for c in card["events"].values()) == len(scored)
    ConfidenceModel.load(model_file)                       # a usable model file


def test_run_again_keeps_the_mapped_epochs(mapped, capsys):
    labels = (mapped / "pred" / "scene_000" / "epoch_01" / "labels.npz").read_bytes()
    capsys.readouterr()
    assert main(["run", str(mapped / "ds"), "--out", str(mapped / "pred")]) == 0
    assert "already in memory.db, kept" in capsys.readouterr().out
    assert (mapped / "pred" / "scene_000" / "epoch_01" / "labels.npz").read_bytes() == labels


def test_an_unregistrable_revisit_leaves_the_map_alone(mapped, tmp_path):
    from stseg_ros.core.layout import read_cloud

    xyz, rgb = read_cloud(mapped / "ds" / "scene_000" / "epoch_00")
    with ObjectMemory(tmp_path / "m.db") as memory:
        mapper = Mapper(memory, make_segmenter("geometric"))
        mapper.process(FusedScan.single(xyz, rgb))
        objects = memory.objects()
        noise = np.random.default_rng(0).uniform(-3, 3, (20_000, 3)).astype(np.float32)
        outcome = mapper.process(FusedScan.single(noise, np.zeros((20_000, 3), np.uint8)))
        assert not outcome.registered and outcome.reason != "ok"
        assert memory.objects() == objects and memory.changes(1) == []
        assert memory.epoch_indices() == [0, 1] and not memory.epochs()[1].registered


def test_unknown_segmenter_is_a_clear_error(mapped, capsys):
    assert main(["run", str(mapped / "ds"), "--out", str(mapped / "x"), "--segmenter",
                 "magic"]) == 2
    assert "unknown segmenter 'magic'" in capsys.readouterr().err


def test_run_killed_after_its_first_revisit_resumes(mapped, tmp_path, python):
    import signal
    import subprocess

    out = tmp_path / "pred"
    proc = subprocess.Popen([python, "-m", "stseg_ros.cli", "run", str(mapped / "ds"),
                             "--out", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("segmenter: ")
        first = proc.stdout.readline()
        assert "epoch_00" in first
        proc.send_signal(signal.SIGKILL)            # somewhere in epoch_01 or between
        proc.wait(timeout=30)
    finally:
        proc.kill()
    with ObjectMemory(out / "scene_000" / "memory.db") as memory:
        assert memory.epoch_indices()[0] == 0       # epoch 0 survived the kill intact
    assert main(["run", str(mapped / "ds"), "--out", str(out)]) == 0
    with ObjectMemory(out / "scene_000" / "memory.db") as memory:
        assert memory.epoch_indices() == [0, 1]
    assert main(["eval", str(mapped / "ds"), str(out), "--quiet"]) == 0


def test_identities_from_a_tracking_segmenter_replace_matching_but_moves_are_measured():
    rng = np.random.default_rng(4)
    known = _known_chair_and_table(rng)
    xyz1, rgb1, m1 = _scene([((1, 3.5), *CHAIR)], rng)        # chair moved, table gone
    now = _segments(xyz1, rgb1, m1)
    # a 4D segmenter says segment 0 is object 1: taken as is, and the move measured
    assoc = associate(now, [5], xyz1, known, seen_now=EmptyPlaces(xyz1), proposed={0: 1})
    assert assoc.matched == {0: 1} and assoc.moved == {1}
    assert assoc.missing == [2] and assoc.vacated == {2}       # the table's place is empty
    # without a proposal the segment is new, even where shape matching would find it
    alone = associate(now, [5], xyz1, known, proposed={})
    assert alone.new == [0] and not alone.matched
    # a proposal linking the chair to the table, far away and unlike it, is refused
    unlike = associate(now, [5], xyz1, known, seen_now=EmptyPlaces(xyz1), proposed={0: 2})
    assert unlike.new == [0] and not unlike.moved


def test_proposals_yield_in_place_to_the_older_identity_and_the_fuller_segment():
    """Two ways a tracking segmenter's proposals lose an object's identity on a
    long history, corrected by where the map's objects stand."""
    rng = np.random.default_rng(9)
    xyz, rgb, members = _scene([((1.0, 1.0), *TABLE), ((3.5, 3.5), *CHAIR)], rng)
    table, chair = _segments(xyz, rgb, members)
    old = [Known(1, table, 7, xyz[members[0]], first_seen=0),
           Known(2, chair, 5, xyz[members[1]], first_seen=0)]
    # the table's history was split: its segment is proposed id 9, first seen last
    # revisit as a piece of it, while the table's own id 1 is proposed to nothing
    piece = Known(9, _segments(xyz, rgb, [members[0][:300]])[0], 7, xyz[members[0][:300]],
                  first_seen=4)
    assoc = associate([table, chair], [7, 5], xyz, [*old, piece], proposed={0: 9, 1: 2})
    assert assoc.matched == {0: 1, 1: 2} and 9 in assoc.missing
    # a removed object's id proposed for a segment elsewhere is refused, in place kept
    xyz2, rgb2, members2 = _scene([((1.0, 3.5), *CHAIR)], rng)
    elsewhere = _segments(xyz2, rgb2, members2)[0]
    assert not associate([elsewhere], [5], xyz2, old, proposed={0: 2},
                         in_place_only=frozenset({2})).matched
    assert associate([chair], [5], xyz, old, proposed={0: 2},
                     in_place_only=frozenset({2})).matched == {0: 2}
    # a fragment of the chair is proposed its id; the whole chair, unproposed, takes it
    fragment = _segments(xyz, rgb, [members[1][:150]])[0]
    assoc = associate([fragment, chair], [5, 5], xyz, old, proposed={0: 2})
    assert assoc.matched[1] == 2 and 0 not in assoc.matched


class _ScriptedSegmenter:
    """Segments given as point sets with classes: the mapper's change rules
    tested apart from any segmenter's mistakes."""

    name, window = "scripted", 0

    def __init__(self) -> None:
        self.script: list[tuple[np.ndarray, int]] = []
        self.score = 0.9                # of each segment's class

    def segment(self, xyz, rgb, history=()):
        from stseg_ros.core.segmentation import Segmentation

        normals = estimate_normals(xyz, 0.08)
        return Segmentation(np.zeros(len(xyz), np.int32),
                            [describe(xyz, rgb, normals, m) for m, _ in self.script],
                            [c for _, c in self.script], [self.score] * len(self.script),
                            normals)


def test_a_swinging_door_is_not_reported_moved_but_a_moved_chair_is(tmp_path):
    from stseg_ros.core.classes import class_id
    from stseg_ros.core.records import ChangeKind

    rng = np.random.default_rng(5)
    door, chair = class_id("door"), class_id("chair")
    walls = [((0.0, 2.5), (0.1, 5.0, 2.2), (200, 200, 190)),
             ((2.5, 0.0), (5.0, 0.1, 2.2), (180, 190, 200)),
             ((4.0, 4.0), *TABLE)]                                        # and a table
    seg = _ScriptedSegmenter()
    with ObjectMemory(tmp_path / "m.db") as memory:
        mapper = Mapper(memory, seg)
        ids = []
        for door_angle, chair_at in ((0.0, (2.0, 2.0)), (40.0, (3.0, 1.2))):
            xyz, rgb, members = _scene([*walls, ((1.5, 3.0), (0.9, 0.05, 2.0), (120, 80, 40)),
                                        (chair_at, *CHAIR)], rng)
            hinge = np.array([1.05, 3.0, 0.0])
            xyz[members[3]] = _turned(xyz[members[3]], hinge, door_angle)
            seg.script = [(members[3], door), (members[4], chair)]
            outcome = mapper.process(FusedScan.single(xyz, rgb))
            assert outcome.registered, outcome.reason
            ids.append([int(outcome.instance_id[m].max()) for m in members[3:]])
        assert ids[0] == ids[1]                         # both kept their identity
        moved = {c.object_id for c in memory.changes(1) if c.kind == ChangeKind.MOVED}
        assert moved == {ids[1][1]}                     # the chair, not the door


def test_a_door_swung_open_keeps_its_id_though_the_segmenter_did_not_link_it():
    """A 4D segmenter that proposes nothing for a door opened by 90 degrees:
    none of its points lie where the closed door's did, yet it is the same
    door (fixtures do not move). A door across the room is not it."""
    from stseg_ros.core.classes import class_id

    door = class_id("door")
    rng = np.random.default_rng(9)
    leaf = ((1.5, 3.0), (0.9, 0.05, 2.0), (120, 80, 40))
    xyz, rgb, members = _scene([leaf, ((4.2, 0.5), (0.05, 0.9, 2.0), (120, 80, 40))], rng)
    closed, other = _segments(xyz, rgb, members)
    known = [Known(1, closed, door, xyz[members[0]]), Known(2, other, door, xyz[members[1]])]
    xyz1, rgb1, m1 = _scene([leaf], rng)
    xyz1[m1[0]] = _turned(xyz1[m1[0]], np.array([1.05, 3.0]), 90.0)
    opened = _segments(xyz1, rgb1, m1)[0]
    assoc = associate([opened], [door], xyz1, known, proposed={})
    assert assoc.matched == {0: 1} and assoc.missing == [2]
    far = associate([opened], [door], xyz1, known[1:], proposed={})
    assert not far.matched
    # a wall piece called a door, 3.8 m wide, reaches no farther than a door
    xyz2, rgb2, m2 = _scene([((3.2, 2.0), (3.8, 0.05, 2.0), (120, 80, 40))], rng)
    wide = _segments(xyz2, rgb2, m2)[0]
    assert not associate([wide], [door], xyz2, known[:1], proposed={}).matched
    # proposed the id of a piece of it once called something else: the door's id
    piece = m1[0][: len(m1[0]) // 3]
    fragment = Known(3, _segments(xyz1, rgb1, [piece])[0], class_id("otherprop"), xyz1[piece])
    assoc = associate([opened], [door], xyz1, [*known, fragment], proposed={0: 3})
    assert assoc.matched == {0: 1} and 3 in assoc.missing
    # a door's footprint is bare whenever it stands open: that is no removal
    bare, _, _ = _scene([], rng)
    assoc = associate([], [], bare, known[:1], seen_now=EmptyPlaces(bare))
    assert assoc.missing == [1] and not assoc.vacated


def test_the_first_revisit_reports_no_addition_and_a_later_one_where_it_saw_floor(tmp_path):
    """The revisit that defines the map sees every object for the first time,
    in places nothing saw before: no event for a planner to act on. A box that
    then appears on floor the first revisit saw empty is an addition."""
    from stseg_ros.core.classes import class_id
    from stseg_ros.core.records import ChangeKind
    from stseg_ros.mapping.association import AssociationConfig

    rng = np.random.default_rng(6)
    walls = [((0.0, 2.5), (0.1, 5.0, 2.2), (200, 200, 190)),
             ((2.5, 0.0), (5.0, 0.1, 2.2), (180, 190, 200)), ((4.0, 4.0), *TABLE),
             ((1.0, 1.0), *CHAIR)]
    box = ((2.5, 3.0), (0.5, 0.4, 0.45), (40, 60, 200))
    seg = _ScriptedSegmenter()
    cfg = AssociationConfig(min_change_confidence=0.0)     # every candidate event
    with ObjectMemory(tmp_path / "m.db") as memory:
        mapper = Mapper(memory, seg, association=cfg)
        for objects in (walls, [*walls, box]):
            xyz, rgb, members = _scene(objects, rng)
            seg.script = [(m, class_id(name)) for m, name in
                          zip(members[2:], ("table", "chair", "box"), strict=False)]
            outcome = mapper.process(FusedScan.single(xyz, rgb))
            assert outcome.registered, outcome.reason
        assert memory.changes(0) == []
        added = [c for c in memory.changes(1) if c.kind == ChangeKind.ADDED]
        assert [c.class_name for c in added] == ["box"]


@pytest.mark.parametrize("score, reported", [(0.95, True), (0.05, False)])
def test_only_changes_likely_enough_are_reported(tmp_path, score, reported):
    """A chair gone from a place the scan saw empty: with strong evidence it is
    removed, with weak evidence (a fragment, say) only unobserved, unreported."""
    from stseg_ros.core.classes import class_id
    from stseg_ros.core.records import ChangeKind, ObjectState
    from stseg_ros.mapping.association import AssociationConfig
    from stseg_ros.mapping.confidence import ConfidenceModel

    model = tmp_path / "model.json"       # sure of a removal as the class score is high
    model.write_text(ConfidenceModel({"removed": [-5.0, 0.0, 0.0, 10.0, 0.0]}).to_json())
    cfg = AssociationConfig(change_confidence=str(model), min_change_confidence=0.5)
    rng = np.random.default_rng(5)
    walls = [((0.0, 2.5), (0.1, 5.0, 2.2), (200, 200, 190)),
             ((2.5, 0.0), (5.0, 0.1, 2.2), (180, 190, 200)), ((4.0, 4.0), *TABLE)]
    seg = _ScriptedSegmenter()
    seg.score = score
    with ObjectMemory(tmp_path / "m.db") as memory:
        mapper = Mapper(memory, seg, association=cfg)
        for objects in ([*walls, ((2.0, 2.0), *CHAIR)], walls):
            xyz, rgb, members = _scene(objects, rng)
            seg.script = [(m, class_id("table" if k == 2 else "chair"))
                          for k, m in enumerate(members[2:], start=2)]
            outcome = mapper.process(FusedScan.single(xyz, rgb))
            assert outcome.registered, outcome.reason
        chair = next(o for o in outcome.objects if o.class_name == "chair")
        removals = [c for c in outcome.changes if c.kind == ChangeKind.REMOVED]
        if reported:
            assert chair.state == ObjectState.REMOVED
            assert [c.object_id for c in removals] == [chair.id]
            assert removals[0].confidence == pytest.approx(1 / (1 + np.exp(5.0 - 10.0 * score)))
            assert memory.changes(1)[-1].confidence == pytest.approx(removals[0].confidence)
        else:
            assert chair.state == ObjectState.UNOBSERVED and not removals


def test_an_object_is_relabelled_only_when_its_new_class_is_sure(tmp_path):
    """An object whose class flips with little confidence, as the classes of
    real scans do, keeps its class and reports nothing."""
    from stseg_ros.core.classes import class_id
    from stseg_ros.core.records import ChangeKind

    rng = np.random.default_rng(7)
    seg = _ScriptedSegmenter()
    xyz, rgb, members = _scene([((2.0, 2.0), *TABLE), ((4.0, 4.0), *CHAIR)], rng)
    with ObjectMemory(tmp_path / "m.db") as memory:
        mapper = Mapper(memory, seg)
        for cls, score in (("table", 0.9), ("desk", 0.4), ("desk", 0.9)):
            seg.script = [(members[0], class_id(cls)), (members[1], class_id("chair"))]
            seg.score = score
            assert mapper.process(FusedScan.single(xyz, rgb)).registered
        relabels = [(c.epoch, c.class_name) for c in memory.changes()
                    if c.kind == ChangeKind.RELABELLED]
        assert relabels == [(2, "desk")]


class _WindowedSegmenter(_ScriptedSegmenter):
    """A segmenter that looks at its ``window`` newest stored epochs, as the
    learned 4D one does."""

    window = 3

    def segment(self, xyz, rgb, history=()):
        self.history = list(history)
        return super().segment(xyz, rgb)


def _stored_epochs(memory, epochs, xyz, rgb, members):
    """``epochs`` revisits of the same room, stored as the mapper stores them."""
    from stseg_ros.core.records import ObjectRecord, Pose
    from stseg_ros.memory import EpochEntry, EpochPoints

    instance = np.zeros(len(xyz), np.int32)
    for oid, m in enumerate(members, 1):
        instance[m] = oid
    for t in range(epochs):
        objects = [ObjectRecord(oid, cls, name, 0.9, Pose((float(c[0]), float(c[1]), 0.4)),
                                (0.5, 0.5, 0.9), len(m), 0, t)
                   for oid, (m, cls, name, c) in enumerate(
                       zip(members, (5, 7), ("chair", "table"), ((1, 1), (3, 3)),
                           strict=True), 1)]
        memory.commit_epoch(EpochEntry(t, True, np.eye(4), f"day {t}"), objects,
                            points=EpochPoints(xyz, rgb, instance, np.where(instance == 1, 5,
                                               np.where(instance == 2, 7, 2)).astype(np.int32)))


@pytest.mark.parametrize("epochs", [4, 12])
def test_a_revisit_reads_only_the_segmenter_s_window_of_stored_epochs(tmp_path, epochs):
    """Per-revisit work does not grow with the number of stored epochs: the
    history handed to the segmenter is its window, the known objects come from
    the epoch they were last seen in, each stored epoch joins the map's
    structure once (on start), and the identities are the same."""
    rng = np.random.default_rng(11)
    xyz, rgb, members = _scene([((1, 1), *CHAIR), ((3, 3), *TABLE)], rng)
    with ObjectMemory(tmp_path / "m.db") as memory:
        _stored_epochs(memory, epochs, xyz, rgb, members)
        seg = _WindowedSegmenter()
        seg.script = [(members[0], 5), (members[1], 7)]
        mapper = Mapper(memory, seg)
        before = memory.points_read
        outcome = mapper.process(FusedScan.single(xyz, rgb))
        assert outcome.registered, outcome.reason
        assert len(seg.history) == 3
        assert np.array_equal(seg.history[-1].xyz, memory.points(epochs - 1).xyz)
        # on start: every stored epoch into the map, the window, the objects' views
        assert memory.points_read - before - 1 == epochs + 3 + 1
        before = memory.points_read
        again = mapper.process(FusedScan.single(xyz, rgb))
        # then per revisit: the newest epoch into the map, and the window
        assert memory.points_read - before == 1 + 3
        assert [int(again.instance_id[m].max()) for m in members] == [1, 2]
        assert [int(outcome.instance_id[m].max()) for m in members] == [1, 2]
        assert outcome.changes == []


def test_known_objects_read_on_start_are_the_views_the_mapper_kept(tmp_path):
    """A restart rebuilds each object's view as the running mapper kept it: the
    epoch it was last seen in, unless that sighting was a fragment of an earlier
    one, which does not replace it; and it reads only those epochs."""
    from stseg_ros.core.records import ObjectState

    rng = np.random.default_rng(12)
    seg = _ScriptedSegmenter()
    walls = [((0.0, 2.5), (0.1, 5.0, 2.2), (200, 200, 190)),
             ((2.5, 0.0), (5.0, 0.1, 2.2), (180, 190, 200))]
    with ObjectMemory(tmp_path / "m.db") as memory:
        mapper = Mapper(memory, seg)
        # the table goes, the chair moves, then only a quarter of the chair is segmented
        for placed, share in (([((1, 1), *CHAIR), ((3, 3), *TABLE)], 1.0),
                              ([((1, 1), *CHAIR)], 1.0), ([((1.8, 1.2), *CHAIR)], 1.0),
                              ([((1.8, 1.2), *CHAIR)], 0.25)):
            xyz, rgb, members = _scene([*walls, *placed], rng)
            seg.script = [(m[:int(len(m) * share)], 5 if i == 0 else 7)
                          for i, m in enumerate(members[2:])]
            assert mapper.process(FusedScan.single(xyz, rgb)).registered
        states = {o.id: (o.state, o.epoch_last_seen) for o in memory.objects()}
        assert states == {1: (ObjectState.PRESENT, 3), 2: (ObjectState.REMOVED, 0)}
        live = mapper.known()
        full = memory.points(2)          # the full view of epoch 2 stays (stored to 1 mm)
        assert np.allclose(live[1].points, full.xyz[full.instance_id == 1], atol=1e-3)
        before = memory.points_read
        known = Mapper(memory, seg).known()
        assert memory.points_read - before == 2                # epochs 2 and 0 only
        assert sorted(known) == sorted(live) == [1, 2]
        for oid, k in known.items():
            assert np.allclose(k.points, live[oid].points, atol=1e-3)
            assert k.class_id == {1: 5, 2: 7}[oid] and k.first_seen == 0


def _long_room(rng):
    """An 8 x 4 m room with walls and boxes of different sizes along it: xyz,
    rgb, and per box its point indices and centre x."""
    def plane(n, corner, u, v):
        a, b = rng.random((2, n, 1))
        return np.asarray(corner) + a * np.asarray(u) + b * np.asarray(v)

    parts = [plane(60_000, (0, 0, 0), (8, 0, 0), (0, 4, 0)),
             plane(30_000, (0, 0, 0), (8, 0, 0), (0, 0, 2.5)),
             plane(30_000, (0, 4, 0), (8, 0, 0), (0, 0, 2.5)),
             plane(15_000, (0, 0, 0), (0, 4, 0), (0, 0, 2.5)),
             plane(15_000, (8, 0, 0), (0, 4, 0), (0, 0, 2.5))]
    boxes = [((1.0, 0.6), (0.8, 0.5, 1.2)), ((2.2, 3.3), (0.5, 0.5, 0.9)),
             ((3.4, 0.8), (1.2, 0.6, 0.7)), ((4.6, 3.1), (0.6, 1.0, 1.6)),
             ((5.8, 0.7), (0.4, 0.4, 0.5)), ((6.9, 2.9), (1.0, 0.7, 1.0)),
             ((7.4, 1.0), (0.5, 0.9, 0.4))]
    start, members, centres = sum(len(p) for p in parts), [], []
    for centre, size in boxes:
        pts = _box(centre, size, rng, 3000)
        members.append(np.arange(start, start + len(pts)))
        centres.append(centre[0])
        start += len(pts)
        parts.append(pts)
    xyz = np.concatenate(parts).astype(np.float32)
    rgb = rng.integers(60, 200, (len(xyz), 3)).astype(np.uint8)
    return xyz, rgb, members, np.array(centres)


def test_revisits_register_to_the_structure_of_all_earlier_ones_not_the_first_alone(tmp_path):
    """A first revisit that saw the left part of a room and a later one that saw
    only the right part: the later one shares too little with the first to be
    registered to it, but registers to the map the revisits in between grew
    (the whole room, as seen in the second)."""
    from stseg_ros.core.classes import class_id
    from stseg_ros.mapping.registration import register_scan

    rng = np.random.default_rng(8)
    xyz, rgb, members, centres = _long_room(rng)
    segmenter = _ScriptedSegmenter()
    crops = [(-0.1, 4.0), (-0.1, 8.1), (4.2, 8.1)]    # left part, whole room, right part
    poses = [planar_pose(0.0, 0.0, 0.0), planar_pose(0.7, -0.4, 0.5),
             planar_pose(-1.2, 0.9, -2.0)]             # each revisit's odom frame
    scans = []
    with ObjectMemory(tmp_path / "m.db") as memory:
        mapper = Mapper(memory, segmenter)
        for (low, high), odom_from_map in zip(crops, poses, strict=True):
            keep = np.flatnonzero((xyz[:, 0] >= low) & (xyz[:, 0] <= high))
            where = {int(k): i for i, k in enumerate(keep)}
            segmenter.script = [(np.array([where[int(k)] for k in m]), class_id("box"))
                                for m, c in zip(members, centres, strict=True)
                                if low + 0.6 < c < high - 0.6]
            scans.append(transform_points(odom_from_map, xyz[keep]).astype(np.float32))
            outcome = mapper.process(FusedScan.single(scans[-1], rgb[keep]))
            assert outcome.registered, outcome.reason
            error = outcome.map_from_odom @ odom_from_map
            assert np.degrees(abs(np.arctan2(error[1, 0], error[0, 0]))) < 2.0
            assert np.linalg.norm(error[:3, 3]) < 0.05
        stored = memory.points(0)
    # against the first revisit alone the last one has too little in common: its
    # walls slide along the first revisit's and it is refused or put in a wrong place
    alone = register_scan(scans[2], stored.xyz)
    error = alone.map_from_scan @ poses[2]
    assert not alone.success or np.linalg.norm(error[:3, 3]) > 0.5


@pytest.mark.parametrize("forget_after, back_at", [(3, (3.0, 1.0)), (0, (3.0, 1.0)),
                                                   (3, (1.5, 1.5))])
def test_an_object_seen_once_and_missed_since_keeps_its_id_only_in_place(tmp_path,
                                                                        forget_after, back_at):
    """A box segmented in one revisit only (a fragment, most often) and missed
    in the four after it. When its place is then bare and a box like it stands
    elsewhere, that box is a new object, not the old one moved, and the old one
    is not reported removed; with forgetting off (0) it is taken as a move.
    Seen again where it stood, it keeps its id."""
    from stseg_ros.core.classes import class_id
    from stseg_ros.core.records import ChangeKind, ObjectState
    from stseg_ros.mapping.association import AssociationConfig

    rng = np.random.default_rng(21)
    walls = [((0.0, 2.5), (0.1, 5.0, 2.2), (200, 200, 190)),
             ((2.5, 0.0), (5.0, 0.1, 2.2), (180, 190, 200)), ((4.0, 4.0), *TABLE)]
    box = ((0.5, 0.4, 0.5), (40, 160, 40))
    seg = _ScriptedSegmenter()
    cfg = AssociationConfig(forget_after=forget_after, min_change_confidence=0.0)
    with ObjectMemory(tmp_path / "m.db") as memory:
        mapper = Mapper(memory, seg, association=cfg)
        for revisit in range(6):
            where = (1.5, 1.5) if revisit < 5 else back_at
            xyz, rgb, members = _scene([*walls, (where, *box)], rng)
            seg.script = [(members[2], class_id("table"))]
            if revisit in (0, 5):
                seg.script.append((members[3], class_id("box")))
            outcome = mapper.process(FusedScan.single(xyz, rgb))
            assert outcome.registered, outcome.reason
        first = int(memory.points(0).instance_id[members[3]].max())
        last = int(outcome.instance_id[members[3]].max())
        events = {(c.kind, c.object_id) for c in memory.changes(5)}
        old = next(o for o in memory.objects() if o.id == first)
        if back_at == (1.5, 1.5):
            assert last == first and old.state == ObjectState.PRESENT and not events
        elif forget_after:
            assert last != first
            assert (ChangeKind.MOVED, first) not in events
            assert (ChangeKind.REMOVED, first) not in events
            assert old.state == ObjectState.UNOBSERVED
        else:
            assert last == first and (ChangeKind.MOVED, first) in events
