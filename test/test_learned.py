"""The learned 4D segmenter's parts: voxels, losses, 4D instances and identities,
safe weights, and deterministic, resumable training."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from stseg_ros.core.weights import WeightsError
from stseg_ros.learned.instances import link_moved, reconcile, tracks_from_clusters
from stseg_ros.learned.losses import cross_time_contrast, discriminative_loss
from stseg_ros.learned.model import ModelConfig, UNet4D, build_model, load_weights, save_weights
from stseg_ros.learned.voxels import voxel_centres, voxel_mode, voxelize

SMALL = ModelConfig(channels=(8, 16, 16), time_sharing=(0.0, 0.5, 1.0), embed_dim=4)


def test_voxel_features_ignore_a_revisit_s_exposure():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 2, (5000, 3))
    rgb = rng.integers(40, 160, (5000, 3)).astype(np.uint8)
    dark = (rgb * 0.7).astype(np.uint8)
    a, b = voxelize(xyz, rgb, 0.05), voxelize(xyz, dark, 0.05)
    assert np.array_equal(a.coords, b.coords)
    assert np.abs(a.feats - b.feats).max() < 0.03          # only rounding differs
    assert (a.point_voxel < len(a.coords)).all()
    with pytest.raises(ValueError, match="not finite"):
        voxelize(np.r_[xyz, [[np.nan, 0, 0]]], np.r_[rgb, [[0, 0, 0]]], 0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # a training crop may miss an epoch
        assert len(voxelize(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), 0.05).coords) == 0


def test_a_thin_floor_fills_one_voxel_layer():
    rng = np.random.default_rng(1)
    floor = np.c_[rng.uniform(0, 2, (4000, 2)), rng.normal(0, 0.003, 4000)]   # fused: +-3 mm
    vox = voxelize(floor, np.full((4000, 3), 120, np.uint8), 0.05)
    assert set(vox.coords[:, 2].tolist()) == {0}
    assert np.allclose(voxel_centres(vox.coords, 0.05)[:, 2], 0.0)


def test_voxel_mode_takes_the_most_frequent_label():
    point_voxel = np.array([0, 0, 0, 1, 1, 2])
    labels = np.array([7, 3, 7, 4, 5, 9])
    assert voxel_mode(point_voxel, labels, 3).tolist() == [7, 4, 9]   # a tie: the smaller


def test_discriminative_loss_is_zero_only_for_tight_separate_instances():
    emb = torch.tensor([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5]])
    inst = torch.tensor([1, 1, 2, 2])
    assert discriminative_loss(emb, inst, reg=0.0) == 0.0
    merged = torch.tensor([[0.0, 0], [0.1, 0], [0.2, 0], [0.3, 0]])
    assert discriminative_loss(merged, inst, reg=0.0) > 1.0
    loose = torch.tensor([[0.0, 0], [2.0, 0], [5, 5], [5.1, 5]])
    assert discriminative_loss(loose, inst, reg=0.0) > 0.0


def test_cross_time_contrast_prefers_the_same_object_across_epochs():
    inst = torch.tensor([1, 2, 1, 2])
    epoch = torch.tensor([0, 0, 1, 1])
    right = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    swapped = torch.tensor([[1.0, 0], [0, 1.0], [0.1, 1.0], [1.0, 0.1]])
    assert cross_time_contrast(right, inst, epoch) < cross_time_contrast(swapped, inst, epoch)


def _blob(centre, n=40):
    g = np.stack(np.meshgrid(range(4), range(5), range(2), indexing="ij"), -1).reshape(-1, 3)
    return g[:n] + np.asarray(centre)


def test_one_cluster_two_look_alikes_one_moved_gives_two_linked_tracks():
    # epoch 0: chairs A at (0,0) and B at (20,0); epoch 1: A stays, B moved to (20,30);
    # the embedding cannot tell them apart (one cluster)
    parts = [(_blob((0, 0, 0)), 0), (_blob((20, 0, 0)), 0),
             (_blob((0, 0, 0)), 1), (_blob((20, 30, 0)), 1)]
    coords = np.concatenate([p for p, _ in parts])
    epoch = np.concatenate([np.full(len(p), t) for p, t in parts])
    track = tracks_from_clusters(coords, epoch, np.zeros(len(coords), np.int64))
    a0, b0, a1, b1 = (track[i * 40] for i in range(4))
    assert a0 == a1 and b0 == b1 and a0 != b0


def test_a_cluster_spanning_epochs_is_one_track_even_far_away():
    coords = np.concatenate([_blob((0, 0, 0)), _blob((60, 60, 0))])
    epoch = np.r_[np.zeros(40), np.ones(40)].astype(np.int64)
    track = tracks_from_clusters(coords, epoch, np.zeros(80, np.int64))
    assert len(set(track.tolist())) == 1


def test_a_moved_object_is_linked_by_embedding_only_where_its_old_place_was_seen():
    old, new, other = _blob((0, 0, 0)), _blob((30, 0, 0)), _blob((0, 40, 0))
    floor = np.array([(x, y, -1) for x in range(-2, 6) for y in range(-2, 7)])
    coords = np.concatenate([old, other, new, floor])
    epoch = np.r_[np.zeros(80), np.ones(40 + len(floor))].astype(np.int64)
    track = np.r_[np.zeros(40), np.full(40, 1), np.full(40, 2),
                  np.full(len(floor), -1)].astype(np.int64)
    emb = np.zeros((len(coords), 4))
    emb[:40, 0] = emb[80:120, 0] = 1.0           # old and new look alike
    emb[40:80, 1] = 1.0
    cls = np.array([5, 5, 5])
    linked = link_moved(track, epoch, emb, cls, 1, coords)
    assert (linked[80:120] == 0).all() and (linked[40:80] == 1).all()
    unseen = link_moved(track[:120], epoch[:120], emb[:120], cls, 1, coords[:120])
    assert (unseen[80:120] == 2).all()           # its old place was out of view
    assert (link_moved(track, epoch, emb, np.array([5, 5, 7]), 1, coords)[80:120] == 2).all()


def test_a_move_is_linked_to_the_look_alike_of_the_right_size_and_colour():
    """Two boxes left their places and one box appeared: the embedding finds the
    small one a little more alike, but the new box has the big one's size and
    hue (under other light), and takes its id."""
    def box(x, y, sx, sy, sz):
        g = np.stack(np.meshgrid(range(sx), range(sy), range(sz), indexing="ij"), -1)
        return g.reshape(-1, 3) + np.array([x, y, 0])

    small, big, new = box(0, 0, 3, 3, 3), box(20, 0, 8, 5, 6), box(10, 30, 5, 8, 6)  # turned
    floor = np.array([(x, y, -1) for x in range(-2, 30) for y in range(-2, 8)])
    coords = np.concatenate([small, big, new, floor])
    n_old = len(small) + len(big)
    epoch = np.r_[np.zeros(n_old), np.ones(len(new) + len(floor))].astype(np.int64)
    track = np.r_[np.zeros(len(small)), np.ones(len(big)), np.full(len(new), 2),
                  np.full(len(floor), -1)].astype(np.int64)
    emb = np.zeros((len(coords), 4))
    emb[:len(small), 0] = 1.0                        # the small box: as alike as can be
    emb[len(small):n_old, :2] = (0.9, 0.436)        # the big one: cosine 0.9
    emb[n_old:n_old + len(new), 0] = 1.0
    colour = np.zeros((len(coords), 3))
    colour[:len(small)] = (0.4, 0.0, -0.2)          # another hue, too
    colour[len(small):n_old] = 0.3                  # the big one, grey, in brighter light
    cls = np.array([29, 29, 29])
    rows = slice(n_old, n_old + len(new))
    assert (link_moved(track, epoch, emb, cls, 1, coords)[rows] == 0).all()   # embedding only
    linked = link_moved(track, epoch, emb, cls, 1, coords, colour=colour)
    assert (linked[rows] == 1).all()
    # nothing of its size and colour left: the new box stays new
    alone = np.where(track == 1, -1, track)
    assert (link_moved(alone, epoch, emb, cls, 1, coords, colour=colour)[rows] == 2).all()


def test_reconcile_gives_each_persistent_id_to_one_track():
    track = np.array([0, 0, 0, 1, 1, 1, 2, 2, -1])
    stored = np.array([5, 5, 6, 5, 5, 0, 0, 0, 9])
    ids = reconcile(track, stored, [0, 1, 2])
    assert sorted(ids.values()) == [5, 6] or sorted(ids.values()) == [5]
    assert len(set(ids.values())) == len(ids)
    assert 2 not in ids                          # its past points carried no id
    assert reconcile(track, stored, [0, 1, 2], min_votes=0.9) == {}


def test_weights_round_trip_and_refuse_code(tmp_path):
    torch.manual_seed(0)
    model = UNet4D(SMALL).eval()
    path = tmp_path / "w.pt"
    save_weights(path, model, {"note": "test"})
    loaded = load_weights(path)
    assert loaded.config == SMALL and loaded.info == {"note": "test"}
    coords = torch.tensor([[0, 0, x, y, 0] for x in range(6) for y in range(6)])
    feats = torch.randn(len(coords), 5)
    with torch.no_grad():
        a = model(coords, feats)
        b = build_model(loaded)(coords, feats)
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x, y, atol=1e-2)               # float16 storage

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'pwned')!r}, 'w').write('ran')",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "stseg_ros.unet4d", "x": Evil()}, protocol=2))
    with pytest.raises(WeightsError, match="not a weights file this package wrote; it was "
                                           "not loaded") as err:
        load_weights(evil)
    assert not (tmp_path / "pwned").exists()
    assert "weights_only" not in str(err.value) and str(evil) in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"some": torch.zeros(2)}, foreign)
    with pytest.raises(WeightsError, match="not a weights file this package wrote"):
        load_weights(foreign)


def _spoilt_weights(how: str) -> dict:
    torch.manual_seed(0)
    blob = {"format": "stseg_ros.unet4d", "version": 1, "config": SMALL.to_dict(),
            "state": dict(UNet4D(SMALL).state_dict()), "info": {}}
    if how == "missing key":
        del blob["state"]["semantic.weight"]
    elif how == "extra key":
        blob["state"]["head.extra"] = torch.zeros(2)
    elif how == "wrong shape":
        blob["state"]["semantic.weight"] = torch.zeros(3, 3)
    elif how == "config str":
        blob["config"] = "small"
    elif how == "config key":
        blob["config"]["depth"] = 5
    elif how == "config levels":
        blob["config"]["channels"] = [8, 16]
    elif how == "config float":
        blob["config"]["embed_dim"] = 4.5
    elif how == "state str":
        blob["state"] = "tensors"
    elif how == "state list":
        blob["state"] = list(blob["state"].values())
    elif how == "no state":
        del blob["state"]
    elif how == "info list":
        blob["info"] = [1, 2]
    elif how == "class weights":
        blob["info"] = {"class_weights": [1.0, "a"]}
    elif how == "version":
        blob["version"] = "one"
    return blob


@pytest.mark.parametrize(("how", "match"), [
    ("missing key", "'state' lacks semantic.weight"),
    ("extra key", "'state' has unknown tensors head.extra"),
    ("wrong shape", r"semantic.weight \(3, 3\) \(expected \(\d+, 8\)\)"),
    ("config str", "'config' is a str, expected a dict"),
    ("config key", "config has unknown keys depth"),
    ("config levels", "2 channel levels but 3 time_sharing"),
    ("config float", "config 'embed_dim' is 4.5, expected a positive integer"),
    ("state str", "'state' is a str, expected a dict of tensors"),
    ("state list", "'state' is a list"),
    ("no state", "'state' is a NoneType"),
    ("info list", "'info' is a list"),
    ("class weights", "its class weights \\(info\\) must be"),
    ("version", "weights version 'one'"),
])
def test_weights_with_the_tag_but_wrong_content_are_a_weights_error(tmp_path, how, match):
    path = tmp_path / "w.pt"
    torch.save(_spoilt_weights(how), path)
    with pytest.raises(WeightsError, match=match) as err:
        load_weights(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize(("content", "match"), [
    (b"", "unreadable, cut short or damaged"),
    (b"\x80\x02garbage that is no pickle", "not a weights file this package wrote"),
    (None, "unreadable, cut short or damaged"),
])
def test_unreadable_weights_files_are_a_weights_error(tmp_path, content, match):
    path = tmp_path / "w.pt"
    if content is None:                              # a real weights file cut short
        save_weights(path, UNet4D(SMALL))
        path.write_bytes(path.read_bytes()[:3000])
    else:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=match) as err:
        load_weights(path)
    assert str(path) in str(err.value) and "weights_only" not in str(err.value)


def test_a_spoilt_training_checkpoint_is_a_weights_error(tmp_path):
    from stseg_ros.learned.train import TrainConfig, train

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"model": "tensors", "optimizer": {}, "step": 3, "config": SMALL.to_dict(),
                "train": {}}, out / "checkpoint.pt")
    with pytest.raises(WeightsError, match="'model' is a str") as err:
        train([tmp_path / "none"], out, TrainConfig(iterations=1), SMALL, progress=False)
    assert str(out / "checkpoint.pt") in str(err.value)
    torch.save(["not", "a", "checkpoint"], out / "checkpoint.pt")
    with pytest.raises(WeightsError, match="not a checkpoint stseg train wrote"):
        train([tmp_path / "none"], out, TrainConfig(iterations=1), SMALL, progress=False)


def _spoilt_forest(path, how: str) -> None:
    from stseg_ros.mapping.classifier import DEFAULT_MODEL

    with np.load(DEFAULT_MODEL) as z:
        arrays = dict(z)
    if how == "no value":
        del arrays["value"]
    elif how == "format":
        arrays["format"] = np.array("something.else")
    elif how == "value shape":
        arrays["value"] = arrays["value"][:, :2]
    elif how == "child out of range":
        arrays["left"] = arrays["left"].copy()
        arrays["left"][0] = 10 ** 7
    elif how == "loop":
        arrays["right"] = arrays["right"].copy()
        arrays["right"][0] = 0
    elif how == "pickle":
        arrays["value"] = np.array([{"code": "run me"}], dtype=object)
    elif how == "strings":
        arrays["threshold"] = np.array(["a"] * len(arrays["threshold"]))
    np.savez(path, **arrays)


@pytest.mark.parametrize(("how", "match"), [
    ("no value", "no value"),
    ("format", "not a classifier for these cluster features"),
    ("value shape", "'value' has shape"),
    ("child out of range", "its trees point outside their arrays"),
    ("loop", "its trees point outside their arrays"),
    ("strings", "'threshold' holds <U1, expected numbers"),
    ("garbage", "not a readable .npz .*; not a weights file this package wrote; it was not "
                "loaded"),
    ("bare array", "a bare array, expected an .npz"),
    ("pickle", "Object arrays cannot be loaded .*; not a weights file this package wrote"),
    ("folder", "a folder, not a classifier file"),
])
def test_a_spoilt_cluster_classifier_is_a_weights_error(tmp_path, how, match):
    from stseg_ros.mapping.classifier import ClusterClassifier

    path = tmp_path / "forest.npz"
    if how == "garbage":
        path.write_bytes(b"PK\x03\x04 not really")
    elif how == "bare array":
        with path.open("wb") as f:
            np.save(f, np.zeros((3, 3)))
    elif how == "folder":
        path.mkdir()
    else:
        _spoilt_forest(path, how)
    with pytest.raises(WeightsError, match=match) as err:
        ClusterClassifier.load(path)
    assert str(err.value).startswith(f"{path}: ")


def test_class_weights_lift_rare_classes_and_keep_the_average_loss_scale():
    from stseg_ros.learned.data import LabelledEpoch, class_weights

    labels = np.array([0] * 90 + [1] * 10 + [-1] * 5, np.int8)     # wall-like, rare, unknown
    scene = [[LabelledEpoch(np.zeros((len(labels), 3), np.float32),
                            np.zeros((len(labels), 3), np.uint8), labels,
                            np.zeros(len(labels), np.int32))]]
    w = class_weights(scene, 3, power=0.5)
    assert w[1] == pytest.approx(3 * w[0])          # (0.9 / 0.1) ** 0.5
    assert 0.9 * w[0] + 0.1 * w[1] == pytest.approx(1.0)
    assert w[2] == pytest.approx(1.0)               # never seen: left alone
    assert np.allclose(class_weights(scene, 3, power=0.0), 1.0)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset

    root = tmp_path_factory.mktemp("train") / "ds"
    generate_dataset(root, GenerateConfig(seed=3, revisits=2, frames=0), progress=False)
    return root


def test_training_samples_keep_epochs_apart_and_labels_on_their_voxels(tiny_dataset):
    from stseg_ros.core.layout import open_dataset, read_epoch_result
    from stseg_ros.learned.data import SampleConfig, load_scenes, make_sample

    classes = ModelConfig().class_ids
    scenes = load_scenes([tiny_dataset], classes, progress=False)
    truth = read_epoch_result(tiny_dataset / open_dataset(tiny_dataset).scenes[0] / "epoch_00")
    true_class = {i: e.class_id for i, e in truth.instances.items()}
    cfg = SampleConfig(crop=3.0, epoch_counts=(2,), epoch_weights=(1.0,))
    sample = make_sample(scenes, seed=0, index=0, voxel=0.05, cfg=cfg)
    again = make_sample(scenes, seed=0, index=0, voxel=0.05, cfg=cfg)
    assert np.array_equal(sample.coords, again.coords)          # (seed, index) decides
    assert set(sample.coords[:, 1].tolist()) == {0, 1}
    assert len(np.unique(sample.coords, axis=0)) == len(sample.coords)
    ids = [set(sample.instance[(sample.coords[:, 1] == t) & (sample.instance > 0)].tolist())
           for t in (0, 1)]
    assert ids[0] & ids[1]                    # persistent ids: the same objects in both
    labelled = np.flatnonzero(np.isin(sample.instance, list(true_class)))
    expected = [classes.index(true_class[i]) if true_class[i] in classes else -1
                for i in sample.instance[labelled]]
    assert (sample.semantic[labelled] == expected).mean() > 0.9
    floor = sample.semantic == classes.index(2)
    assert (sample.coords[floor, 4] == 0).mean() > 0.7       # the floor's own layer


def test_training_is_deterministic_and_resumes_exactly(tiny_dataset, tmp_path):
    from stseg_ros.learned.data import SampleConfig
    from stseg_ros.learned.train import TrainConfig, train

    def run(out, iterations):
        cfg = TrainConfig(iterations=iterations, warmup=2, checkpoint_every=2, log_every=1,
                          sample=SampleConfig(crop=2.0))
        return load_weights(train([tiny_dataset], out, cfg, SMALL, progress=False,
                                  log=lambda _: None))

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    # a checkpoint from before a setting existed resumes as if it had its default
    ckpt = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    del ckpt["train"]["revisit_every"]
    torch.save(ckpt, tmp_path / "b" / "checkpoint.pt")
    resumed = run(tmp_path / "b", 4)                  # picks up the step-2 checkpoint
    for k, v in straight.state.items():
        assert torch.equal(v, resumed.state[k]), k
    # class-balanced by default: the loss's class weights travel with the weights
    assert len(resumed.info["class_weights"]) == len(SMALL.class_ids)
    lines = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 4 and '"step": 4' in lines[-1]
    with pytest.raises(ValueError, match="another model config"):
        train([tiny_dataset], tmp_path / "b", TrainConfig(iterations=6), ModelConfig(),
              progress=False, log=lambda _: None)
    other_loss = TrainConfig(iterations=6, warmup=2, checkpoint_every=2, log_every=1,
                             sample=SampleConfig(crop=2.0), class_balance=0.0)
    with pytest.raises(ValueError, match="another class_balance"):
        train([tiny_dataset], tmp_path / "b", other_loss, SMALL, progress=False,
              log=lambda _: None)


def test_stored_class_weights_take_part_of_the_balancing_bias_back_out(tmp_path):
    from stseg_ros.learned.segmenter import PRIOR_CORRECTION, LearnedSegmenter, NetworkOutput

    torch.manual_seed(0)
    weights = np.linspace(0.4, 8.0, len(SMALL.class_ids))     # rare classes weigh more
    path = tmp_path / "balanced.pt"
    save_weights(path, UNet4D(SMALL).eval(), {"class_weights": weights.tolist()})
    corrected = LearnedSegmenter(path)
    raw = LearnedSegmenter(path, prior_correction=0.0)
    assert raw.logit_shift is None
    rng = np.random.default_rng(0)
    cloud = [(rng.uniform(0, 2, (3000, 3)), rng.integers(0, 255, (3000, 3), dtype=np.uint8))]
    log_ratio = (np.log(NetworkOutput(corrected.model, cloud, "cpu", corrected.logit_shift).probs)
                 - np.log(NetworkOutput(raw.model, cloud, "cpu").probs))
    # per voxel, each class loses PRIOR_CORRECTION x its log weight (up to a constant)
    expected = -PRIOR_CORRECTION * np.log(weights)
    assert np.allclose(log_ratio - log_ratio[:, :1], expected - expected[0], atol=1e-4)

    save_weights(path, UNet4D(SMALL).eval(), {"class_weights": [1.0, 2.0]})
    with pytest.raises(ValueError, match="class weights"):
        LearnedSegmenter(path)


def test_the_shipped_weights_load_and_bench_reports_speed():
    from stseg_ros.bench.segmentation import bench_segmentation, format_segmentation
    from stseg_ros.learned.segmenter import shipped_weights
    from stseg_ros.mapping.segmenter import make_segmenter

    assert shipped_weights().is_file()
    assert make_segmenter().name == "learned"              # the default, installed
    assert make_segmenter("learned-per-epoch").window == 0     # reads no stored epoch
    result = bench_segmentation(revisits=2, points=20_000, repeats=1)
    assert result["points_per_epoch"] == [20_000, 20_000]
    assert result["objects_found"] > 0 and result["seconds"]["total"] > 0
    assert result["peak_rss_mib"] > 0
    assert "4D segmentation of T=2 epochs" in format_segmentation(result)


def test_missing_weights_and_cuda_without_a_gpu_are_clear_errors(tmp_path):
    from stseg_ros.learned.segmenter import LearnedSegmenter

    with pytest.raises(FileNotFoundError, match="no weights"):
        LearnedSegmenter(tmp_path / "none.pt")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            LearnedSegmenter(device="cuda")


def test_without_installed_weights_the_default_falls_back_to_geometric(monkeypatch):
    import stseg_ros.mapping.segmenter as segmenters

    monkeypatch.setattr(segmenters, "LEARNED_WEIGHTS", "not_installed.pt")
    assert segmenters.default_segmenter() == "geometric"
    assert segmenters.make_segmenter().name == "geometric"


def _revisit_room(rng, moved_box_at):
    """Floor 4 x 4 m, 3 cm above z = 0 (a map's floor is levelled, not exact), two
    boxes that stay and one at ``moved_box_at``; per point: 0 floor, 1 and 3 staying,
    2 moving."""
    def box(lo, size, n=6000):
        p = rng.uniform(0, 1, (n, 3)) * size
        face = rng.integers(0, 5, n)                  # four sides and the top
        axis, high = np.array([0, 0, 1, 1, 2])[face], np.array([0, 1, 0, 1, 1])[face]
        p[np.arange(n), axis] = high * np.asarray(size)[axis]
        return p + lo
    floor = np.c_[rng.uniform(0, 4, (40_000, 2)), np.zeros(40_000)]
    parts = [floor, box((1.0, 1.0, 0.0), (0.6, 0.5, 0.45)),
             box((*moved_box_at, 0.0), (0.5, 0.5, 0.8)), box((0.3, 3.0, 0.0), (0.4, 0.4, 0.6))]
    xyz = np.concatenate(parts) + [0, 0, 0.03]
    return xyz.astype(np.float32), np.repeat([0, 1, 2, 3], [len(p) for p in parts])


def _revisit_memory(path, rooms, registered=True):
    from stseg_ros.memory import EpochEntry, EpochPoints, ObjectMemory

    with ObjectMemory(path) as memory:
        for t, (xyz, _) in enumerate(rooms):
            n = len(xyz)
            memory.commit_epoch(EpochEntry(t, registered or t == 0, np.eye(4)), points=EpochPoints(
                xyz, np.full((n, 3), 128, np.uint8), np.zeros(n, np.int32),
                np.zeros(n, np.int32)))
    return path


def test_unchanged_objects_of_unlabelled_revisits_share_an_id_and_moved_ones_none(tmp_path):
    from stseg_ros.learned.revisits import load_revisits

    rng = np.random.default_rng(0)
    rooms = [_revisit_room(rng, (2.5, 2.5)), _revisit_room(rng, (2.6, 0.6))]
    (tmp_path / "robot").mkdir()
    _revisit_memory(tmp_path / "robot" / "memory.db", rooms)
    [scene] = load_revisits([tmp_path], progress=False)     # found under the folder
    assert len(scene) == 2
    for box in (1, 3):
        staying = [ep.instance[part == box] for ep, (_, part) in zip(scene, rooms, strict=True)]
        ids = {int(np.bincount(s).argmax()) for s in staying}
        assert len(ids) == 1 and 0 not in ids               # one id, in both revisits
        assert all((s == min(ids)).mean() > 0.9 for s in staying)
    for ep, (_, part) in zip(scene, rooms, strict=True):
        assert (ep.instance[part == 2] == 0).all()          # moved: no free positive
        assert (ep.instance[part == 0] == 0).all()
        assert (ep.semantic == -1).all()                    # no class is claimed
        assert abs(np.median(ep.xyz[part == 0, 2])) < 0.01  # floor brought to z = 0


def test_training_learns_from_unlabelled_revisits_and_says_so(tiny_dataset, tmp_path):
    import json

    from stseg_ros.learned.data import SampleConfig
    from stseg_ros.learned.train import TrainConfig, train

    rng = np.random.default_rng(1)
    rooms = [_revisit_room(rng, (2.5, 2.5)), _revisit_room(rng, (2.6, 0.6))]
    memory = _revisit_memory(tmp_path / "memory.db", rooms)
    cfg = TrainConfig(iterations=4, warmup=2, checkpoint_every=2, log_every=1, revisit_every=2,
                      sample=SampleConfig(crop=9.0))          # the whole room in every sample
    weights = load_weights(train([tiny_dataset], tmp_path / "run", cfg, SMALL, progress=False,
                                 log=lambda _: None, revisits=[memory]))
    assert weights.info["revisits"] == [str(memory)]
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert ["revisit" in s for s in steps] == [True, False, True, False]
    assert all(s["revisit"] > 0 for s in steps if "revisit" in s)    # positives and negatives
    one_registered = _revisit_memory(tmp_path / "one.db", rooms, registered=False)
    with pytest.raises(ValueError, match="no room with two registered epochs"):
        train([tiny_dataset], tmp_path / "run2", cfg, SMALL, progress=False,
              log=lambda _: None, revisits=[one_registered])


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory):
    """A room generated with bags (two revisits, drifting odometry), mapped as
    stseg run maps it: the scans in its memory are fused, not the truth clouds."""
    from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
    from stseg_ros.mapping.config import load_config
    from stseg_ros.offline.runner import run_dataset

    root = tmp_path_factory.mktemp("fused")
    generate_dataset(root / "ds", GenerateConfig(seed=7, revisits=2, frames=24, workers=0),
                     progress=False)
    run_dataset(root / "ds", root / "run", log=lambda _: None,
                cfg=load_config(sets=["segmentation.segmenter=geometric"]))
    return root / "ds", root / "run"


def test_fused_scans_are_labelled_from_the_truth_and_a_foreign_run_is_refused(
        fused_run, tiny_dataset, tmp_path):
    from stseg_ros.core.layout import open_dataset, read_epoch_result
    from stseg_ros.learned.data import FLOOR
    from stseg_ros.learned.fused import load_fused
    from stseg_ros.learned.train import TrainConfig, train
    from stseg_ros.memory import ObjectMemory

    dataset, run = fused_run
    classes = ModelConfig().class_ids
    [scene], coverage = load_fused([(dataset, run)], classes, progress=False)
    assert coverage.epochs == 2 and coverage.unregistered == 0 and len(scene) == 2
    assert coverage.share > 0.9          # fused surfaces lie on the truth, drift and all
    scene_dir = dataset / open_dataset(dataset).scenes[0]
    with ObjectMemory(run / scene_dir.name / "memory.db") as memory:
        stored = [memory.points(t) for t in (0, 1)]
    for t, (ep, points) in enumerate(zip(scene, stored, strict=True)):
        assert len(ep.xyz) == len(points.xyz)             # every fused point, none added
        truth = read_epoch_result(scene_dir / f"epoch_0{t}")
        objects = {i for i, e in truth.instances.items() if e.class_id not in (1, 2, 22)}
        ids = set(np.unique(ep.instance).tolist()) - {0}
        assert ids <= set(truth.instances) and len(ids & objects) >= 5   # their true ids
        floor = ep.semantic == classes.index(FLOOR)
        assert abs(float(np.median(ep.xyz[floor, 2]))) < 0.01
        for i in ids & objects:                           # and the class of that object
            known = classes.index(truth.instances[i].class_id) \
                if truth.instances[i].class_id in classes else -1
            assert (ep.semantic[ep.instance == i] == known).mean() > 0.95, i
    # another room's truth does not fit these scans: told, not trained on
    cfg = TrainConfig(iterations=1, warmup=1)
    with pytest.raises(ValueError, match="another dataset|lie on their ground truth"):
        train([tiny_dataset], tmp_path / "t", cfg, SMALL, progress=False, log=lambda _: None,
              fused=[(tiny_dataset, run)])
    with pytest.raises(ValueError, match="map the dataset first"):
        load_fused([(dataset, tmp_path / "nothing")], classes, progress=False)


def test_training_on_fused_scans_with_long_samples_fine_tunes_given_weights(
        fused_run, tiny_dataset, tmp_path):
    from stseg_ros.learned.data import SampleConfig
    from stseg_ros.learned.train import TrainConfig, train

    start = tmp_path / "start.pt"
    torch.manual_seed(5)
    save_weights(start, UNet4D(SMALL), {"iterations": 7})
    lines: list[str] = []
    cfg = TrainConfig(iterations=2, warmup=1, lr=0.0,   # no step moves it: the start survives
                      sample=SampleConfig(crop=9.0, epoch_counts=(5,), epoch_weights=(1.0,)))
    out = load_weights(train([tiny_dataset], tmp_path / "run", cfg, progress=False,
                             log=lines.append, fused=[fused_run], init=start))
    assert out.config == SMALL                               # the network of --init
    start_state = load_weights(start).state
    for k, _ in UNet4D(SMALL).named_parameters():            # (norm statistics do move)
        assert torch.equal(out.state[k], start_state[k]), k
    assert any("fused rooms: 2 of 2 revisits registered" in line for line in lines)
    assert out.info["fused"] == [[str(p) for p in fused_run]] and out.info["init"] == str(start)
    assert out.info["init_info"] == {"iterations": 7}        # how the start was made
    with pytest.raises(ValueError, match="same, non-zero length"):
        SampleConfig(epoch_counts=(1, 5), epoch_weights=(1.0,))
