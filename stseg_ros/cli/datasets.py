"""``stseg`` verbs of datasets: generating the benchmark, importing real
rescans, scoring predictions."""

from __future__ import annotations

import argparse
from pathlib import Path

from stseg_ros.cli.common import UsageError, file_out, folder_out


def _cmd_generate(args: argparse.Namespace) -> int:
    from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset

    cfg = GenerateConfig(seed=args.seed, revisits=args.revisits, rooms=args.rooms,
                         frames=args.frames, preview=args.preview, workers=args.workers,
                         labels=tuple(v for v in args.labels.split(",") if v))
    folder_out(args.out)
    index = generate_dataset(args.out, cfg, progress=not args.quiet)
    epochs = len(index.scenes) * cfg.revisits
    mode = "fast mode, scans only" if cfg.frames == 0 else f"{cfg.frames} frames per revisit"
    print(f"wrote {len(index.scenes)} scene(s) x {cfg.revisits} revisits ({mode}) to "
          f"{index.root} ({epochs} epochs)")
    if cfg.preview:
        print(f"previews: {index.root}/scene_*/epoch_*/preview.png")
    if cfg.labels:
        print(f"label images: /camera/labels/{{{','.join(cfg.labels)}}}/image_raw in each bag; "
              f"the robot's label set: {index.root}/label_set.yaml")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from stseg_ros.importers import ImportOptions, import_dataset

    options = ImportOptions(label_map=args.label_map, meta=args.meta,
                            npy_labels=args.npy_labels,
                            check_alignment=not args.no_alignment_check)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    folder_out(args.out)
    summary = import_dataset(args.importer, args.sources, args.out, options, log)
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

    from stseg_ros.metrics.evaluate import (
        evaluate_sets,
        format_change_events,
        format_metrics,
        json_ready,
    )
    from stseg_ros.metrics.selection import ScoringMode, parse_classes

    if args.json:
        file_out(args.json, "--json")
    paths = [args.dataset, args.predictions, *args.more]
    if len(paths) % 2:
        raise UsageError(f"{paths[-1]} has no partner: give DATASET PREDICTIONS pairs")
    mode = ScoringMode(args.class_agnostic,
                       parse_classes(args.classes) if args.classes is not None else None)
    pairs = list(zip(paths[::2], paths[1::2], strict=True))
    metrics = evaluate_sets(pairs, progress=not args.quiet, mode=mode)
    print(format_metrics(metrics))
    if args.changes:
        print("\n" + (format_change_events(metrics) or "no change events"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_ready(metrics), f, indent=1)
            f.write("\n")
    return 0


def add_verbs(verbs) -> None:
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
    p.add_argument("--labels", default="", metavar="VARIANT,...",
                   help="also write label images as a robot's 2D segmenter would, one topic "
                        "per variant: clean, bleed, missed, confused, flicker, typical "
                        "(README, 'Your own 2D labels')")
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
    p.add_argument("--changes", action="store_true",
                   help="also list each predicted change event as true or false, and each "
                        "missed one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)
