"""The robot's own 2D labels: label sets, label images, votes fused per voxel,
segments corrected and named by them, and generated labels with the errors
2D segmenters make."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.benchmark.labels import VARIANTS, LabelErrors, label_topic, robot_labels
from stseg_ros.core.camera import Intrinsics
from stseg_ros.core.classes import class_id
from stseg_ros.core.images import decode_label_image
from stseg_ros.core.segmentation import Segmentation
from stseg_ros.mapping.config import RunConfig, load_config
from stseg_ros.mapping.frames import LabelImage, SkippedFrame
from stseg_ros.mapping.geometric import describe
from stseg_ros.mapping.labels import (
    LabelConfig,
    LabelSet,
    LabelSetError,
    LabelVotes,
    apply_labels,
)
from stseg_ros.offline.runner import fuse_frames
from stseg_ros.sources.base import InputError
from stseg_ros.sources.rosbag import read_bag_frames

SET = """format: stseg_ros.label_set
classes:
  1: floor
  4: {name: office chair, nyu40: chair}
  7: {name: couch, nyu40: 6}
  15: {name: potted plant}
"""


def _set(tmp_path, text=SET):
    path = tmp_path / "labels.yaml"
    path.write_text(text)
    return path


def test_a_label_set_names_the_robots_classes_and_maps_them_to_nyu40(tmp_path):
    labels = LabelSet.load(_set(tmp_path))
    assert labels.get(4).name == "office chair" and labels.get(4).nyu40 == class_id("chair")
    assert labels.get(7).nyu40 == class_id("sofa")
    assert labels.get(1).name == "floor" and labels.get(1).nyu40 == class_id("floor")
    plant = labels.get(15)
    assert plant.own and plant.nyu40 == class_id("otherprop")     # scored as otherprop
    assert labels.get(99) is None
    assert LabelSet.nyu40().get(5).name == "chair"                 # no file: NYU40 ids


@pytest.mark.parametrize("text, says", [
    ("a: [", "not valid YAML"),
    ("format: other\nclasses: {1: chair}", "not a label set"),
    ("format: stseg_ros.label_set\nclasses: {}", "'classes' must map"),
    ("format: stseg_ros.label_set\nclasses: {x: chair}", "label id 'x' is not an integer"),
    ("format: stseg_ros.label_set\nclasses: {0: chair}", "outside 1..65535"),
    ("format: stseg_ros.label_set\nclasses: {3: {name: mug, nyu40: cup}}",
     "'cup' is not a NYU40 class name"),
    ("format: stseg_ros.label_set\nclasses: {3: {name: mug, nyu40: 77}}", "outside 1..40"),
    ("format: stseg_ros.label_set\nclasses: {3: {nyu40: 5}}", "expected a name"),
])
def test_a_bad_label_set_is_refused_naming_the_file(tmp_path, text, says):
    path = _set(tmp_path, text)
    with pytest.raises(LabelSetError, match=says) as err:
        LabelSet.load(path)
    assert str(path) in str(err.value)
    with pytest.raises(LabelSetError, match="cannot read"):
        LabelSet.load(tmp_path / "missing.yaml")


def _image(array: np.ndarray, encoding: str, big: bool = False):
    data = array.astype(array.dtype.newbyteorder(">" if big else "<")).tobytes()
    return SimpleNamespace(height=array.shape[0], width=array.shape[1], encoding=encoding,
                           step=array.shape[1] * array.dtype.itemsize, is_bigendian=int(big),
                           data=data)


def test_label_images_decode_in_every_id_encoding():
    ids = np.arange(12).reshape(3, 4)
    for dtype, encoding in ((np.uint8, "mono8"), (np.uint8, "8UC1"), (np.uint16, "mono16"),
                            (np.uint16, "16UC1"), (np.int32, "32SC1")):
        out = decode_label_image(_image(ids.astype(dtype), encoding))
        assert out.dtype == np.int32 and (out == ids).all()
    assert (decode_label_image(_image(ids.astype(np.uint16) + 300, "mono16", big=True))
            == ids + 300).all()
    with pytest.raises(ValueError, match="label image encoding 'rgb8'"):
        decode_label_image(_image(ids.astype(np.uint8), "rgb8"))
    short = _image(ids.astype(np.uint16), "mono16")
    short.data = short.data[:10]
    with pytest.raises(ValueError, match="needs 24 bytes, got 10"):
        decode_label_image(short)


# --- votes ---------------------------------------------------------------------------

INTR = Intrinsics(80, 60, 60.0, 60.0, 39.5, 29.5)


def _wall_view(votes: LabelVotes, stamp: int) -> None:
    """A camera 2 m in front of a wall (the plane z = 2 of the camera frame)."""
    votes.add_view(stamp, np.full((60, 80), 2.0, np.float32), INTR, np.eye(4), 4.5)


def _halves(left: int, right: int, shape=(60, 80)) -> np.ndarray:
    out = np.full(shape, left, np.int32)
    out[:, shape[1] // 2:] = right
    return out


def _wall_points() -> np.ndarray:
    x = np.linspace(-1.2, 1.2, 25)
    return np.stack([x, np.zeros_like(x), np.full_like(x, 2.0)], 1)


def test_votes_give_each_point_the_label_its_pixels_carried():
    votes = LabelVotes(LabelConfig(topic="labels", voxel=0.1))
    _wall_view(votes, 100)
    votes.add_labels(100, _halves(4, 7))
    label, share = votes.evidence(_wall_points())
    x = _wall_points()[:, 0]
    assert (label[x < -0.1] == 4).all() and (label[x > 0.1] == 7).all()
    assert (share[np.abs(x) > 0.1] == 1.0).all()
    assert votes.stats.labelled == 1 and votes.stats.unlabelled == 0


def test_labels_arriving_before_or_after_their_frame_are_matched_and_leftovers_counted():
    s = 10**9
    votes = LabelVotes(LabelConfig(topic="labels", voxel=0.1, max_gap_s=0.01))
    votes.add_labels(2 * s, _halves(4, 4))          # before its frame
    _wall_view(votes, 2 * s)
    _wall_view(votes, 3 * s)                        # its labels come later
    votes.add_labels(3 * s + 5 * 10**6, _halves(7, 7))     # 5 ms off: within the gap
    votes.add_labels(3 * s + s // 2, _halves(7, 7))  # no frame within 10 ms
    _wall_view(votes, 4 * s)                        # never labelled
    votes.add_labels(100 * s, _halves(4, 4))        # no frame has this stamp
    label, share = votes.evidence(_wall_points())
    assert votes.stats.labelled == 2
    assert votes.stats.unlabelled == 1 and votes.stats.unmatched == 2
    # two views voted, one for each label: every point saw both
    assert set(np.unique(label)) <= {4, 7} and np.allclose(share, 0.5)


def test_panoptic_label_images_vote_for_their_class():
    votes = LabelVotes(LabelConfig(topic="labels", voxel=0.1, id_divisor=1000))
    _wall_view(votes, 1)
    votes.add_labels(1, _halves(4 * 1000 + 17, 7 * 1000 + 3))  # instance 17 of class 4, ...
    label, _ = votes.evidence(_wall_points())
    x = _wall_points()[:, 0]
    assert (label[x < -0.1] == 4).all() and (label[x > 0.1] == 7).all()


def test_a_smaller_label_image_scales_and_one_of_other_proportions_is_refused():
    votes = LabelVotes(LabelConfig(topic="labels", voxel=0.1))
    _wall_view(votes, 1)
    votes.add_labels(1, _halves(4, 7, shape=(30, 40)))      # a segmenter's half-size input
    _wall_view(votes, 2)
    votes.add_labels(2, _halves(9, 9, shape=(30, 30)))      # another camera
    label, _ = votes.evidence(_wall_points())
    x = _wall_points()[:, 0]
    assert (label[x < -0.1] == 4).all() and (label[x > 0.1] == 7).all()
    assert votes.stats.refused == {"label image 30x30 does not match depth 80x60": 1}
    assert "1 refused" in votes.stats.note()


# --- segments ------------------------------------------------------------------------

def _box(x0: float, n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, 3)) * [0.5, 0.5, 0.8] + [x0, 0, 0]).astype(np.float32)


def _plant() -> np.ndarray:
    return (np.random.default_rng(4).random((400, 3)) * [0.2, 0.2, 0.3] + [7, 0, 0]
            ).astype(np.float32)


def _scene():
    """Two touching boxes segmented as one object, a patch of floor segmented as
    another, an unlabelled third object, and a plant no segment holds."""
    xyz = np.concatenate([_box(0.0), _box(0.5, seed=1), _box(3.0, seed=2) * [1, 1, 0.02],
                          _box(5.0, seed=3), _plant()])
    rgb = np.full((len(xyz), 3), 128, np.uint8)
    normals = np.tile([0.0, 0.0, 1.0], (len(xyz), 1)).astype(np.float32)
    groups = [np.arange(0, 800), np.arange(800, 1200), np.arange(1200, 1600)]
    segments = [describe(xyz, rgb, normals, g) for g in groups]
    seg = Segmentation(np.zeros(len(xyz), np.int32), segments,
                       [class_id("table")] * 3, [0.8, 0.6, 0.5], normals=normals,
                       identities=[11, 12, 13])
    label = np.zeros(len(xyz), np.int32)
    label[:400], label[400:800], label[800:1200], label[1600:] = 4, 7, 1, 15
    return xyz, rgb, seg, label, np.ones(len(xyz), np.float32)


def test_labels_split_merged_objects_drop_floor_and_name_segments_in_the_robots_words(
        tmp_path):
    xyz, rgb, seg, label, share = _scene()
    out = apply_labels(seg, xyz, rgb, label, share, LabelSet.load(_set(tmp_path)))
    # two from the merged one, the unlabelled one, and the plant only the labels saw
    assert len(out.segments) == 4
    by_name = dict(zip(out.class_names, out.segments, strict=True))
    assert set(by_name) == {"office chair", "couch", "table", "potted plant"}
    assert sorted(by_name["potted plant"].points.tolist()) == list(range(1600, 2000))
    assert out.class_ids[out.class_names.index("potted plant")] == class_id("otherprop")
    assert sorted(by_name["office chair"].points.tolist()) == list(range(400))
    assert sorted(by_name["couch"].points.tolist()) == list(range(400, 800))
    assert out.class_ids[out.class_names.index("couch")] == class_id("sofa")
    assert (out.structure[800:1200] == class_id("floor")).all()   # the floor patch
    # the larger part keeps the tracked identity; the unlabelled segment is untouched
    assert sorted(out.identities) == [0, 0, 11, 13]
    assert out.scores[out.class_names.index("table")] == 0.5


def test_too_few_labelled_points_or_disagreeing_votes_leave_a_segment_as_it_was(tmp_path):
    xyz, rgb, seg, label, share = _scene()
    sparse = np.zeros_like(label)
    sparse[:50] = 4                                # 6 % of the merged segment labelled
    sparse[1600:1700] = 15                         # too few to be an object of its own
    out = apply_labels(seg, xyz, rgb, sparse, share, LabelSet.load(_set(tmp_path)))
    assert out.class_ids == seg.class_ids and out.class_names == ["table"] * 3
    unsure = np.full(len(xyz), 0.3, np.float32)    # every voxel's votes split three ways
    out = apply_labels(seg, xyz, rgb, label, unsure, LabelSet.load(_set(tmp_path)))
    assert out.class_ids == seg.class_ids


# --- generated label images ----------------------------------------------------------

def _rendered():
    semantic = np.full((40, 60), class_id("floor"), np.int32)
    instance = np.zeros((40, 60), np.int32)
    semantic[5:25, 5:25], instance[5:25, 5:25] = class_id("chair"), 1     # 400 px
    semantic[30:34, 40:44], instance[30:34, 40:44] = class_id("box"), 2   # 16 px
    return semantic, instance


def test_generated_labels_err_the_way_2d_segmenters_do():
    semantic, instance = _rendered()
    rng = np.random.default_rng(0)
    clean = robot_labels(semantic, instance, VARIANTS["clean"], (1, 0), rng)
    assert (clean[instance == 1] == 4).all() and (clean[instance == 2] == 13).all()
    assert (clean[instance == 0] == 2).all()                       # the robot's floor id
    missed = robot_labels(semantic, instance, LabelErrors(miss_pixels=100), (1, 0), rng)
    assert (missed[instance == 2] == 0).all() and (missed[instance == 1] == 4).all()
    bled = robot_labels(semantic, instance, LabelErrors(bleed_px=3), (1, 0), rng)
    assert (bled[2:28, 2:28] == 4).all() and bled[0, 0] == 2       # 3 px around the chair
    # a confused object is the same wrong class in every view
    confused = [robot_labels(semantic, instance, LabelErrors(confuse=1.0), (1, 0),
                             np.random.default_rng(k))[10, 10] for k in range(5)]
    assert set(confused) == {7}
    flicker = {int(robot_labels(semantic, instance, LabelErrors(flicker=0.5), (1, 0),
                                np.random.default_rng(k))[10, 10]) for k in range(30)}
    assert 4 in flicker and len(flicker) > 2


@pytest.fixture(scope="module")
def labelled_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("labels") / "ds"
    generate_dataset(out, GenerateConfig(seed=5, revisits=1, frames=40, workers=0,
                                         labels=("clean", "missed")), progress=False)
    return out


def test_a_bag_with_label_images_fuses_them_into_per_point_evidence(labelled_bag):
    bag = labelled_bag / "scene_000" / "epoch_00" / "bag"
    items = list(read_bag_frames(bag, label_topic=label_topic("clean")))
    assert sum(isinstance(i, LabelImage) for i in items) == 40
    assert not any(isinstance(i, SkippedFrame) for i in items)
    cfg = load_config(sets=[f"labels.topic={label_topic('clean')}"])
    scan, stats = fuse_frames(iter(items), cfg)
    assert stats.labels.labelled == 40 and stats.labels.unlabelled == 0
    assert scan.labels.shape == (len(scan.xyz),)
    assert (scan.labels > 0).mean() > 0.9              # nearly every surface point voted
    assert 2 in scan.labels and (scan.labels > 3).any()   # the robot's floor id, objects
    scan, stats = fuse_frames(read_bag_frames(bag), RunConfig())
    assert scan.labels is None and stats.labels is None   # no labels.topic: no evidence
    with pytest.raises(InputError, match="label topic '/camera/nothing' is not"):
        list(read_bag_frames(bag, label_topic="/camera/nothing"))
    assert (labelled_bag / "label_set.yaml").is_file()
    LabelSet.load(labelled_bag / "label_set.yaml")


def test_objects_mapped_with_the_robots_labels_carry_its_class_names(labelled_bag, tmp_path):
    from stseg_ros.core.query import ObjectQuery
    from stseg_ros.memory import ObjectMemory
    from stseg_ros.offline.runner import run_dataset

    cfg = load_config(sets=[f"labels.topic={label_topic('clean')}",
                            f"labels.label_set={labelled_bag / 'label_set.yaml'}",
                            "segmentation.segmenter=geometric"])
    lines: list[str] = []
    run_dataset(labelled_bag, tmp_path / "pred", cfg=cfg, log=lines.append)
    assert any("40 frames labelled" in line for line in lines)
    with ObjectMemory(tmp_path / "pred" / "scene_000" / "memory.db") as memory:
        names = {o.class_name for o in memory.objects()}
        nyu40 = {c.name for c in LabelSet.nyu40().classes.values()}
        own = names - nyu40
        assert own, f"no object named in the robot's own words: {names}"
        robot = {c.name for c in LabelSet.load(labelled_bag / "label_set.yaml").classes.values()}
        assert own <= robot
        name = sorted(own)[0]
        found = memory.objects(ObjectQuery(class_names={name.upper()}))
        assert found and {o.class_name for o in found} == {name}
    with pytest.raises(LabelSetError, match="missing.yaml"):
        run_dataset(labelled_bag, tmp_path / "bad", log=lines.append, cfg=load_config(
            sets=[f"labels.topic={label_topic('clean')}", "labels.label_set=missing.yaml",
                  "segmentation.segmenter=geometric"]))


def test_label_images_asked_of_an_input_without_them_is_an_error_naming_it(labelled_bag,
                                                                           tmp_path):
    from stseg_ros.core.layout import read_cloud
    from stseg_ros.sources import open_inputs

    xyz, rgb = read_cloud(labelled_bag / "scene_000" / "epoch_00")
    cloud = tmp_path / "scan.npz"
    np.savez(cloud, xyz=xyz, rgb=rgb)
    with pytest.raises(InputError, match="scan.npz: a cloud input has no label images"):
        open_inputs([cloud], label_topic=label_topic("clean"))
    assert open_inputs([cloud])                     # without labels it reads


def test_a_segmenter_surer_than_keep_confident_keeps_its_class_in_the_robots_words(tmp_path):
    xyz, rgb, seg, label, share = _scene()
    seg.class_ids[2] = class_id("sofa")              # the segmenter: a sofa, 0.5 sure
    label[1200:1600] = 4                             # the robot: an office chair
    labels = LabelSet.load(_set(tmp_path))

    def third(out):                                  # (class id, name) of that object
        at = next(k for k, s in enumerate(out.segments) if s.points.min() == 1200)
        return out.class_ids[at], out.class_names[at]

    assert third(apply_labels(seg, xyz, rgb, label, share, labels)) == \
        (class_id("chair"), "office chair")
    keeping = apply_labels(seg, xyz, rgb, label, share, labels, LabelConfig(keep_confident=0.4))
    assert third(keeping) == (class_id("sofa"), "couch")   # the robot's name for a sofa
