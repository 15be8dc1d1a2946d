"""``stseg`` verbs of mapping revisits offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stseg_ros.cli.common import file_out, folder_out


def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from stseg_ros.mapping.config import load_config
    from stseg_ros.mapping.segmenter import default_segmenter
    from stseg_ros.offline.runner import run_dataset, run_inputs

    cfg = load_config(args.config, args.set)
    folder_out(args.out)
    if args.db is not None:
        file_out(args.db, "--db")
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
    if is_dataset:
        summary = run_dataset(inputs[0], args.out, args.db, cfg, log=log,
                              progress=not args.quiet)
    else:
        summary = run_inputs(inputs, args.out, args.db, cfg, args.source, log=log,
                             progress=not args.quiet)
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


def add_verbs(verbs) -> None:
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

