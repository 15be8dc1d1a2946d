"""The ``stseg`` command line: one verb per job (SPEC section 4).

Heavy imports (ROS, Open3D, PyTorch) happen inside each verb, so ``--help``
answers instantly.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from stseg_ros import __version__


class UsageError(ValueError):
    """A path or value on the command line cannot be used (names it)."""


# raised for what a user gave (files, settings, inputs), not for a bug: one line, exit 2
USER_ERRORS = (ValueError, OSError, RuntimeError, ImportError)


def _message(err: BaseException) -> str:
    """``err`` as one line: OSError as 'path: reason', ANSI colours and line
    breaks of library messages (Open3D) removed, never empty."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())
    return text or type(err).__name__


def _fail(args: argparse.Namespace, err: BaseException, rc: int = 2) -> int:
    """Report ``err`` in one line and return ``rc``; with --debug, raise it instead."""
    if getattr(args, "debug", False):
        raise err
    print(f"stseg {args.verb}: {_message(err)}", file=sys.stderr)
    return rc


def _folder_out(path, what: str = "--out") -> Path:
    """``path`` as an output folder: it may exist, but not as a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: {what} must be a folder, and this is a file")
    if not path.exists() and any(p.exists() and not p.is_dir() for p in path.parents):
        raise UsageError(f"{path}: {what} cannot be made: a parent is a file")
    return path


def _file_out(path, what: str) -> Path:
    """``path`` as a file to write at the end of a long job, checked first."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: {what} must be a file name, and this is a folder")
    if not path.parent.is_dir():
        raise UsageError(f"{path}: {what}: no folder {path.parent} to write it in")
    return path


def _cmd_demo(args: argparse.Namespace) -> int:
    from stseg_ros.ros.demo import run_demo

    return run_demo(_folder_out(args.out), args.rate, args.timeout)


def _cmd_serve(args: argparse.Namespace) -> int:
    from stseg_ros.ros.map_server import main, ros_arguments

    return main(["stseg", *ros_arguments(args.epoch_period, args.snapshot, args.loop)])


def _cmd_replay(args: argparse.Namespace) -> int:
    from stseg_ros.ros.env import localhost_ros_env
    from stseg_ros.ros.replay import find_bags, replay
    from stseg_ros.sources.rosbag import replayable

    os.environ.update(localhost_ros_env())
    with tempfile.TemporaryDirectory(prefix="stseg_salvaged_") as spare:
        try:
            if args.record is not None:
                _file_out(args.record, "--record")
            bags = [replayable(bag, Path(spare)) for bag in find_bags(args.bags)]
        except (FileNotFoundError, ValueError) as err:
            return _fail(args, err, 2)
        try:
            replay(bags, args.rate, not args.no_revisits, args.accumulator, args.mapper,
                   args.namespace, not args.no_clock, args.record, args.wait)
        except (TimeoutError, ValueError) as err:
            return _fail(args, err, 1)
    return 0


def _object_state(text: str) -> int:
    """``--state`` by name (present, removed, unobserved; any case) or number,
    as the query service takes it (ObjectInstance.STATE_*)."""
    from stseg_ros.core.records import ObjectState

    try:
        return int(ObjectState[text.strip().upper()])
    except KeyError:
        pass
    try:
        return int(ObjectState(int(text)))
    except ValueError:
        names = ", ".join(f"{s.name.lower()} ({s.value})" for s in ObjectState)
        raise argparse.ArgumentTypeError(f"{text!r} is not an object state: {names}") from None


def _spin_client(args: argparse.Namespace, **callbacks):
    import rclpy
    from rclpy.exceptions import NameValidationException

    from stseg_ros.ros.map_client import MapClient

    rclpy.init()
    try:
        return rclpy, MapClient(args.node, name="stseg_cli", **callbacks)
    except NameValidationException as err:
        rclpy.try_shutdown()
        reason = str(err).splitlines()[0].rstrip(":")
        raise UsageError(f"--node {args.node!r}: not a usable ROS node name ({reason})") from None


def _cmd_watch(args: argparse.Namespace) -> int:
    from stseg_ros.core.report import format_epoch_changes, format_epoch_objects

    rclpy, client = _spin_client(
        args, on_instances=lambda e, objs: print(format_epoch_objects(e, objs), flush=True),
        on_changes=lambda e, chs: print(format_epoch_changes(e, chs), flush=True))
    try:
        client.spin_until(lambda: False, args.duration if args.duration > 0 else float("inf"))
    except KeyboardInterrupt:
        pass
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from stseg_ros.core.report import format_objects
    from stseg_ros.ros.conversions import object_from_msg

    region = None
    if args.region:
        region = (tuple(args.region[:3]), tuple(args.region[3:]))
    rclpy, client = _spin_client(args)
    try:
        answer = client.query(class_names=args.class_name, ids=args.id, states=args.state,
                              region=region, timeout=args.timeout)
    except TimeoutError as err:
        return _fail(args, err, 1)
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
    if not answer.success:
        print(f"stseg query: {answer.message}", file=sys.stderr)
        return 1
    print(f"{answer.message}\n{format_objects(object_from_msg(m) for m in answer.instances)}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset

    cfg = GenerateConfig(seed=args.seed, revisits=args.revisits, rooms=args.rooms,
                         frames=args.frames, preview=args.preview, workers=args.workers)
    try:
        _folder_out(args.out)
        index = generate_dataset(args.out, cfg, progress=not args.quiet)
    except (ValueError, FileExistsError) as err:
        return _fail(args, err, 2)
    epochs = len(index.scenes) * cfg.revisits
    mode = "fast mode, scans only" if cfg.frames == 0 else f"{cfg.frames} frames per revisit"
    print(f"wrote {len(index.scenes)} scene(s) x {cfg.revisits} revisits ({mode}) to "
          f"{index.root} ({epochs} epochs)")
    if cfg.preview:
        print(f"previews: {index.root}/scene_*/epoch_*/preview.png")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from stseg_ros.core.layout import FormatError
    from stseg_ros.importers import ImportOptions, import_dataset

    options = ImportOptions(label_map=args.label_map, meta=args.meta,
                            npy_labels=args.npy_labels,
                            check_alignment=not args.no_alignment_check)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    try:
        _folder_out(args.out)
        summary = import_dataset(args.importer, args.sources, args.out, options, log)
    except (FormatError, FileExistsError, ValueError, OSError) as err:
        return _fail(args, err, 2)
    changes = ", ".join(f"{n} {k}" for k, n in sorted(summary.changes.items())) or "none"
    unknown = sum(summary.unknown_labels.values())
    print(f"imported {summary.scenes} scene(s), {summary.epochs} scans, {summary.points} "
          f"points, {summary.objects} 4D objects to {summary.root}; changes: {changes} "
          f"({summary.uncertain} uncertain)"
          + (f"; {unknown} object(s) with labels mapped to otherprop: "
             + ", ".join(f"{k} ({n})" for k, n in summary.unknown_labels.most_common(8))
             if unknown else ""))
    print(f"score a prediction with: stseg eval {summary.root} PRED_DIR")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from stseg_ros.core.layout import FormatError
    from stseg_ros.metrics.evaluate import evaluate_sets, format_metrics, json_ready
    from stseg_ros.metrics.selection import ScoringMode, parse_classes

    if args.json:
        _file_out(args.json, "--json")
    paths = [args.dataset, args.predictions, *args.more]
    if len(paths) % 2:
        print(f"stseg eval: {paths[-1]} has no partner: give DATASET PREDICTIONS pairs",
              file=sys.stderr)
        return 2
    try:
        mode = ScoringMode(args.class_agnostic,
                           parse_classes(args.classes) if args.classes is not None else None)
        pairs = list(zip(paths[::2], paths[1::2], strict=True))
        metrics = evaluate_sets(pairs, progress=not args.quiet, mode=mode)
    except (FormatError, ValueError) as err:
        return _fail(args, err, 2)
    print(format_metrics(metrics))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_ready(metrics), f, indent=1)
            f.write("\n")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    soak = args.what == "soak"        # the options it shares have defaults of its own
    for name, default, soak_default in (("rate", 30.0, 10.0), ("seconds", 20.0, 4.0),
                                        ("revisits", 3, 20), ("hogs", 0, 2)):
        if getattr(args, name) is None:
            setattr(args, name, soak_default if soak else default)

    if args.json:
        _file_out(args.json, "--json")
    if args.what == "segmentation":
        from stseg_ros.bench.segmentation import bench_segmentation, format_segmentation

        try:
            result = bench_segmentation(args.revisits, args.points, device=args.device,
                                        backend=args.sparse_backend, weights=args.weights)
        except (FileNotFoundError, ValueError, ImportError) as err:
            return _fail(args, err, 2)
        print(format_segmentation(result))
    elif args.what == "memory":
        from stseg_ros.bench.memory import bench_memory, format_memory

        result = bench_memory()
        print(format_memory(result))
    elif args.what == "ingest":
        from stseg_ros.bench.ingest import bench_ingest, format_ingest

        result = bench_ingest(args.rate, args.seconds, args.revisits, args.fusion_rate,
                              progress=not args.quiet, hogs=args.hogs)
        print(format_ingest(result))
    elif args.what == "soak":
        from stseg_ros.bench.soak import SoakConfig, bench_soak, format_soak

        cfg = SoakConfig(revisits=args.revisits, seconds=args.seconds, rate_hz=args.rate,
                         kill_probability=args.kill_probability, hogs=args.hogs,
                         seed=args.seed)
        result = bench_soak(cfg, progress=not args.quiet)
        print(format_soak(result))
    elif args.what == "registration":
        from stseg_ros.bench.registration import bench_registration, format_registration
        from stseg_ros.core.layout import FormatError

        try:
            result = bench_registration(range(args.seeds), args.revisits, args.real,
                                        progress=not args.quiet)
        except FormatError as err:
            return _fail(args, err, 2)
        print(format_registration(result))
    else:
        from stseg_ros.bench.generation import bench_generation

        result = bench_generation(frames=args.frames, revisits=args.revisits,
                                  fast_scenes=args.fast_scenes, workers=args.workers,
                                  progress=not args.quiet)
        f, q = result["frame_mode"], result["fast_mode"]
        target = f" (target {f['target_seconds']:.0f} s)" if f["target_seconds"] else ""
        print(f"frame mode: {f['revisits']} revisits x {f['frames_per_revisit']} frames in "
              f"{f['seconds']:.1f} s{target}, {f['frames_per_second']:.1f} frames/s")
        print(f"fast mode:  {q['seconds_per_scene']:.2f} s per scene of {q['revisits']} "
              "revisits")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
            fh.write("\n")
    return 1 if args.what == "soak" and not result["nothing_lost"] else 0


def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from stseg_ros.core.layout import FormatError
    from stseg_ros.mapping.config import ConfigError, load_config
    from stseg_ros.mapping.segmenter import default_segmenter
    from stseg_ros.memory import MemoryFileError
    from stseg_ros.offline.runner import run_dataset, run_inputs

    try:
        cfg = load_config(args.config, args.set)
        _folder_out(args.out)
        if args.db is not None:
            _file_out(args.db, "--db")
    except (ConfigError, UsageError) as err:
        return _fail(args, err, 2)
    flags = {k: v for k, v in (("segmenter", args.segmenter), ("device", args.device),
                               ("sparse_backend", args.sparse_backend),
                               ("weights", args.weights)) if v is not None}
    seg = dataclasses.replace(cfg.segmentation, **flags)
    seg = dataclasses.replace(seg, segmenter=seg.segmenter or default_segmenter())
    cfg = dataclasses.replace(cfg, segmentation=seg)
    if args.up is not None:
        cfg = dataclasses.replace(cfg, levelling=dataclasses.replace(cfg.levelling, up=args.up))
    if seg.device == "cuda" and seg.segmenter == "geometric":
        print("stseg run: the geometric segmenter runs on the CPU; --device cuda ignored",
              file=sys.stderr)
    inputs = [Path(p) for p in args.inputs]
    is_dataset = len(inputs) == 1 and (inputs[0] / "dataset.json").is_file() and not args.source
    start = time.perf_counter()
    log = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if is_dataset:
            summary = run_dataset(inputs[0], args.out, args.db, cfg, log=log,
                                  progress=not args.quiet)
        else:
            summary = run_inputs(inputs, args.out, args.db, cfg, args.source, log=log,
                                 progress=not args.quiet)
    except (FormatError, MemoryFileError, ValueError, RuntimeError, FileNotFoundError,
            ImportError, OSError) as err:
        return _fail(args, err, 2)
    changes = ", ".join(f"{n} {k}" for k, n in sorted(summary.changes.items())) or "none"
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
    print(f"mapped {summary.epochs} epochs ({summary.unregistered} unregistered) in "
          f"{time.perf_counter() - start:.1f} s: {summary.objects} objects, changes: {changes}")
    print(f"time per stage: {stages}")
    if is_dataset:
        print(f"predictions in {args.out}; score them with: stseg eval {inputs[0]} {args.out}")
    else:
        print(f"memory, labelled revisits (revisits/*.ply, *.png), changes.json and map.png "
              f"in {args.out}; settings used in {Path(args.out) / 'config.yaml'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from stseg_ros.core.layout import FormatError
    from stseg_ros.learned.data import SampleConfig
    from stseg_ros.learned.train import TrainConfig, train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from stseg_ros.memory import MemoryFileError

    cfg = TrainConfig(iterations=args.iterations, seed=args.seed, lr=args.lr,
                      class_balance=args.class_balance, contrast_weight=args.contrast_weight,
                      revisit_every=args.revisit_every, sample=SampleConfig(crop=args.crop))
    try:
        _folder_out(args.out)
        train([Path(d) for d in args.datasets], Path(args.out), cfg, device=args.device,
              progress=not args.quiet, log=lambda line: print(line, flush=True),
              revisits=[Path(r) for r in args.revisits])
    except (FormatError, MemoryFileError, ValueError) as err:
        return _fail(args, err, 2)
    return 0


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    import json

    from stseg_ros.offline.classifier_training import train_classifier

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    held = range(args.first_seed + args.seeds, args.first_seed + args.seeds + args.held_out)
    from stseg_ros.core.layout import FormatError

    try:
        out = _file_out(args.out if args.out.endswith(".npz") else args.out + ".npz", "--out")
        model, card = train_classifier(seeds, args.revisits, progress=not args.quiet,
                                       held_out=held if args.held_out else None,
                                       labelled=[Path(d) for d in args.labelled],
                                       labelled_weight=args.labelled_weight)
    except (FormatError, ValueError) as err:
        return _fail(args, err, 2)
    model.save(out)
    print(json.dumps(card, indent=1))
    print(f"wrote {out}; use it by replacing stseg_ros/data/geometric_classifier.npz")
    return 0


DEBUG_HELP = "on an error, show the traceback instead of one line"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stseg", description="Long-term object-level mapping with 4D instance segmentation.")
    parser.add_argument("--version", action="version", version=f"stseg_ros {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("demo", help="run the main job on the embedded defaults",
                         description="Replay a generated room's three revisits into the "
                                     "accumulator and mapper nodes (separate processes), print "
                                     "the objects and changes found, score them and draw the map.")
    p.add_argument("--out", type=Path, default=Path("stseg_demo"),
                   help="folder for the memory, logs, recording and picture (default stseg_demo)")
    p.add_argument("--rate", type=float, default=2.0, help="replay speed factor (default 2)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for the mapper after the last bag")
    p.set_defaults(func=_cmd_demo)

    p = verbs.add_parser("serve", help="publish a stored map snapshot (map_server node)",
                         description="Run the map_server node in the foreground: publishes the "
                                     "epochs of a snapshot file on ~/instances, ~/markers and "
                                     "~/changes and serves ~/query_objects.")
    p.add_argument("--snapshot", default="", help="snapshot JSON (default: the shipped example)")
    p.add_argument("--epoch-period", type=float, default=1.0,
                   help="seconds between epochs; 0 publishes only the latest (default 1)")
    p.add_argument("--loop", action="store_true", help="start again after the last epoch")
    p.set_defaults(func=_cmd_serve)

    p = verbs.add_parser("replay", help="publish rosbag2 bags into the nodes, one revisit each",
                         description="Publish recorded bags (rosbag2 MCAP or sqlite3 folders, "
                                     "or a dataset from `stseg generate`) with their original "
                                     "timing and /clock, calling the accumulator's "
                                     "begin_revisit/end_revisit around each bag.")
    p.add_argument("bags", nargs="+", type=Path, help="bag folders, bag files or datasets")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1: real time)")
    p.add_argument("--no-revisits", action="store_true",
                   help="do not call begin/end revisit (the accumulator's idle timeout splits)")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--accumulator", default="/accumulator", help="accumulator node name")
    p.add_argument("--mapper", default="/mapper", help="mapper node name")
    p.add_argument("--namespace", default="", help="prefix for the bags' topics (not /tf, /clock)")
    p.add_argument("--record", type=Path, help="write the mapper's outputs to this MCAP bag")
    p.add_argument("--wait", type=float, default=0.0,
                   help="then wait up to this many seconds for the mapper to publish every "
                        "replayed revisit")
    p.set_defaults(func=_cmd_replay)

    p = verbs.add_parser("watch", help="print the objects and changes a map node publishes")
    p.add_argument("--node", default="/mapper", help="map node to follow (default /mapper)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (default: until Ctrl-C)")
    p.set_defaults(func=_cmd_watch)

    p = verbs.add_parser("query", help="query the objects of a running map node",
                         description="Call <node>/query_objects; filters combine with AND.")
    p.add_argument("--node", default="/mapper", help="map node to ask (default /mapper)")
    p.add_argument("--class", dest="class_name", action="append", default=[],
                   help="NYU40 class name, repeatable")
    p.add_argument("--id", type=int, action="append", default=[], help="object id, repeatable")
    p.add_argument("--state", type=_object_state, action="append", default=[],
                   metavar="STATE",
                   help="present, removed or unobserved (any case), or its number 0, 1, 2; "
                        "repeatable")
    p.add_argument("--region", type=float, nargs=6, metavar=("XMIN", "YMIN", "ZMIN", "XMAX",
                                                              "YMAX", "ZMAX"),
                   help="axis-aligned box in the map frame (m)")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=_cmd_query)

    p = verbs.add_parser("generate", help="write an evolving-room dataset",
                         description="Procedural rooms revisited T times: per revisit a "
                                     "rosbag2 (MCAP) of RGB-D, camera_info, /tf and /odom, and "
                                     "ground truth in the prediction format (README, "
                                     "'Dataset layout'). Same seed, same dataset.")
    p.add_argument("--out", required=True, help="dataset directory to create (must not exist)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--revisits", type=int, default=3, help="revisits T per scene (default 3)")
    p.add_argument("--rooms", type=int, default=1, help="independent scenes K (default 1)")
    p.add_argument("--frames", type=int, default=300,
                   help="frames per revisit (default 300); 0 = fast mode: scans sampled "
                        "without frames or bags, about a second per scene, for training")
    p.add_argument("--preview", action="store_true",
                   help="also write a top-view preview.png per epoch")
    p.add_argument("--workers", type=int, default=2,
                   help="rendering processes (default 2; 0 renders in this process)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)

    p = verbs.add_parser("import", help="write a dataset from labelled ScanNet or 3RScan "
                                        "rescans",
                         description="Read real labelled scans and write them as an evolving-"
                                     "room dataset (the files stseg generate --frames 0 "
                                     "writes; README, 'Importing labelled rescans'). scannet: "
                                     "release layout (<scan>_vh_clean_2.ply, segs.json, "
                                     "aggregation.json) or preprocessed <scan>_vert/_sem_label/"
                                     "_ins_label.npy; rescans sceneRRRR_SS of one room become "
                                     "its epochs, registered to the first and matched by "
                                     "overlap. 3rscan: labels.instances.annotated.v2.ply and "
                                     "semseg.v2.json per scan, with 3RScan.json's transforms "
                                     "and correspondences.")
    p.add_argument("importer", choices=("scannet", "3rscan"))
    p.add_argument("sources", nargs="+", type=Path,
                   help="scan folders, files of a scan, or folders holding scans")
    p.add_argument("--out", required=True, type=Path,
                   help="dataset directory to create (must not exist or be empty)")
    p.add_argument("--label-map", type=Path,
                   help="scannet: scannetv2-labels.combined.tsv (raw_category -> nyu40id); "
                        "default: NYU40 names and a built-in synonym table")
    p.add_argument("--npy-labels", choices=("auto", "nyu40", "scannet20"), default="auto",
                   help="scannet arrays: ids in *_sem_label.npy (default auto: detected)")
    p.add_argument("--meta", type=Path,
                   help="3rscan: 3RScan.json (default: found beside or above the scans)")
    p.add_argument("--no-alignment-check", action="store_true",
                   help="3rscan: do not judge the given transforms with the registration gate")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_import)

    p = verbs.add_parser("bench", help="measure generation speed, registration accuracy, "
                                       "ingest throughput or 4D segmentation speed",
                         description="generation: generate one frame-mode room and a few "
                                     "fast-mode scenes into a temporary directory and report "
                                     "wall-clock times. registration: register every revisit "
                                     "of generated seeds to the first and report the error "
                                     "distribution. ingest: stream 640x480 RGB-D at --rate "
                                     "into the accumulator and mapper processes while the "
                                     "mapper works and count fused, thinned and dropped "
                                     "frames. segmentation: time the learned 4D segmenter "
                                     "on --revisits epochs of --points points and report "
                                     "peak memory. memory: time object-memory queries on "
                                     "10000 objects and the start-up of a 50-epoch memory. "
                                     "soak: --revisits revisits through the "
                                     "nodes, SIGKILLing one of them at random in some "
                                     "(--kill-probability) with --hogs busy loops beside; "
                                     "exits 1 unless nothing was lost.")
    p.add_argument("what", nargs="?",
                   choices=("generation", "registration", "ingest", "segmentation", "memory",
                            "soak"),
                   default="generation")
    p.add_argument("--rate", type=float, default=None,
                   help="ingest, soak: camera frame rate in Hz (default 30; soak 10)")
    p.add_argument("--seconds", type=float, default=None,
                   help="ingest, soak: seconds streamed per revisit (default 20; soak 4)")
    p.add_argument("--fusion-rate", type=float, default=None,
                   help="ingest: the accumulator's max_fusion_rate_hz (default: its own, 15; "
                        "0 fuses every frame)")
    p.add_argument("--kill-probability", type=float, default=0.5,
                   help="soak: chance per revisit that a node is killed (default 0.5)")
    p.add_argument("--hogs", type=int, default=None,
                   help="ingest, soak: busy loops beside the nodes (default 0; soak 2)")
    p.add_argument("--seed", type=int, default=0, help="soak: random kills of this seed")
    p.add_argument("--seeds", type=int, default=10, help="registration: seeds 0..N-1 (10)")
    p.add_argument("--real", action="append", default=[], type=Path, metavar="DATASET",
                   help="registration: also a dataset of real rescans (stseg import); "
                        "repeatable")
    p.add_argument("--points", type=int, default=100_000,
                   help="segmentation: points per epoch (default 100000)")
    p.add_argument("--device", default="cpu", help="segmentation: cpu or cuda")
    p.add_argument("--sparse-backend", choices=("torch", "minkowski"), default="torch",
                   help="segmentation: sparse convolution backend")
    p.add_argument("--weights", help="segmentation: weights (default: the shipped ones)")
    p.add_argument("--frames", type=int, default=300, help="frames per revisit (default 300)")
    p.add_argument("--revisits", type=int, default=None, help="revisits (default 3; soak 20)")
    p.add_argument("--fast-scenes", type=int, default=5, help="fast-mode scenes (default 5)")
    p.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench)

    p = verbs.add_parser("train", help="train the learned 4D segmenter",
                         description="Train the 4D network on generated datasets (stseg "
                                     "generate --frames 0): samples of 1-3 epochs of a scene, "
                                     "semantic, discriminative-embedding and cross-time "
                                     "contrastive losses. Deterministic for a seed; rerun with "
                                     "the same --out to resume. Writes OUT/weights.pt, "
                                     "OUT/checkpoint.pt and OUT/log.jsonl.")
    p.add_argument("datasets", nargs="+", help="training dataset directories")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--iterations", type=int, default=2000, help="steps (default 2000)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    p.add_argument("--crop", type=float, default=4.0,
                   help="side of the square training window in m (default 4.0)")
    p.add_argument("--class-balance", type=float, default=0.5,
                   help="semantic loss weight per class = frequency ** -this (default 0.5, "
                        "as the shipped weights; 0: plain cross entropy)")
    p.add_argument("--contrast-weight", type=float, default=0.5,
                   help="weight of the cross-time contrastive loss (default 0.5)")
    p.add_argument("--revisits", nargs="+", default=[], metavar="MEMORY",
                   help="unlabelled revisits to learn from: object memories (memory.db, "
                        "as stseg run and the mapper write them) or folders holding them; "
                        "objects unchanged between registered epochs are contrastive "
                        "positives")
    p.add_argument("--revisit-every", type=int, default=4,
                   help="with --revisits: every n-th step is an unlabelled one (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = verbs.add_parser("train-classifier",
                         help="train the geometric segmenter's cluster classifier",
                         description="Generate fast-mode scenes, segment them as stseg run "
                                     "does, label each cluster with its majority true class "
                                     "and fit the random forest; prints the model card "
                                     "figures.")
    p.add_argument("--out", required=True, help="model file to write (.npz)")
    p.add_argument("--seeds", type=int, default=60, help="training scenes (default 60)")
    p.add_argument("--first-seed", type=int, default=1000, help="first seed (default 1000)")
    p.add_argument("--held-out", type=int, default=10,
                   help="scenes after the training ones to measure accuracy on (default 10)")
    p.add_argument("--revisits", type=int, default=2, help="revisits per scene (default 2)")
    p.add_argument("--labelled", nargs="+", default=[], metavar="DATASET",
                   help="labelled datasets (stseg import) whose clusters join the generated "
                        "ones")
    p.add_argument("--labelled-weight", type=int, default=1,
                   help="times each labelled cluster is counted (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train_classifier)

    p = verbs.add_parser("run", help="map revisits offline: a dataset, bags, frame folders, "
                                     "point clouds",
                         description="Fuse each revisit's frames (or read its scan), level it, "
                                     "register it to the map, segment it, keep identities, "
                                     "detect changes and store everything in the object "
                                     "memory. A dataset directory (stseg generate / import) "
                                     "gets predictions for stseg eval; other inputs, one "
                                     "revisit each in the order given (or a folder of them), "
                                     "get a labelled PLY per revisit, changes.json and "
                                     "map.png. Epochs already in the memory are kept, so an "
                                     "interrupted run continues. Sources: rosbag, tum, "
                                     "7scenes, scannet-frames, cloud (README, 'Your own "
                                     "data').")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a dataset directory, or revisits: rosbag2 folders or .mcap/.db3 "
                        "files, TUM / 7-Scenes / ScanNet frame folders, .ply/.pcd/.npz scans, "
                        "or a folder holding several")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--source", choices=("rosbag", "tum", "7scenes", "scannet-frames", "cloud"),
                   help="input format (default: detected from each path)")
    p.add_argument("--db", help="object memory SQLite file (default OUT/memory.db, or for a "
                                "dataset OUT/scene_XXX/memory.db; with several scenes, one "
                                "file per scene next to it)")
    p.add_argument("--config", help="YAML settings file: sections source, fusion, drift, "
                                    "levelling, registration, association, segmentation "
                                    "(OUT/config.yaml of a run is one)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="one setting, after --config, e.g. source.depth_topic=/depth or "
                        "registration.min_fitness=0.4; repeatable")
    p.add_argument("--up", choices=("auto", "none", "x", "y", "z", "-x", "-y", "-z"),
                   metavar="AXIS",
                   help="the inputs' up axis: auto (default: the floor normal nearest the "
                        "cameras' image-down direction), none (as they are), or x, y, z, -x, "
                        "-y, -z; write a negative one as --up=-y (7-Scenes)")
    p.add_argument("--segmenter",
                   help="learned (default): the 4D network over this revisit and the stored "
                        "ones; learned-per-epoch: the same network on each revisit alone, "
                        "identities by geometric association; geometric: planes, clusters "
                        "and a small classifier (the default where the weights are not "
                        "installed)")
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--sparse-backend", choices=("torch", "minkowski"),
                   help="sparse convolution of learned segmenters (minkowski needs "
                        "MinkowskiEngine; same results)")
    p.add_argument("--weights", help="weights of learned segmenters (default: the shipped "
                                     "stseg_ros/data/unet4d.pt; stseg train writes others)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = verbs.add_parser("eval", help="score predictions against a dataset's ground truth",
                         description="Per-epoch instance AP (ScanNet protocol), t-mAP "
                                     "(ReScene4D), change detection, identity switches and "
                                     "registration errors (README, 'Metrics'). A dataset "
                                     "scored against itself gives 1.0.")
    p.add_argument("dataset", help="dataset directory (from stseg generate)")
    p.add_argument("predictions", help="prediction directory (README, 'Prediction format')")
    p.add_argument("more", nargs="*", metavar="DATASET PREDICTIONS",
                   help="further pairs, scored together with the first as one set (for "
                        "example the evaluation sets of several seeds)")
    p.add_argument("--class-agnostic", action="store_true",
                   help="every object class is one class: score grouping and identity "
                        "only (wall, floor, ceiling are still not instances)")
    p.add_argument("--classes", metavar="NAMES|FILE",
                   help="score only these NYU40 classes: comma-separated names or ids "
                        "(chair,table,sofa), or a file with one per line or a JSON list; "
                        "ground truth of other classes is ignored, predictions of other "
                        "classes are dropped")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)
    for sub in verbs.choices.values():       # --debug after the verb too, not resetting it
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help=DEBUG_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A mistake in what the user gave (a path, a file, a
    setting) is one line naming it and exit status 2; anything else one line
    and 1; ``--debug`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"stseg {args.verb}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        return _fail(args, err, 2)
    except Exception as err:                     # noqa: BLE001 - told, not a traceback
        if args.debug:
            raise
        print(f"stseg {args.verb}: unexpected {type(err).__name__}: {_message(err)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
