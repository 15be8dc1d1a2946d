"""``stseg`` verbs of the benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path

from stseg_ros.cli.common import file_out


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    soak = args.what == "soak"        # the options it shares have defaults of its own
    if args.what == "history" and args.revisits is None:
        args.revisits = 30
    for name, default, soak_default in (("rate", 30.0, 10.0), ("seconds", 20.0, 4.0),
                                        ("revisits", 3, 20), ("hogs", 0, 2)):
        if getattr(args, name) is None:
            setattr(args, name, soak_default if soak else default)

    if args.json:
        file_out(args.json, "--json")
    if args.what == "segmentation":
        from stseg_ros.bench.segmentation import bench_segmentation, format_segmentation

        result = bench_segmentation(args.revisits, args.points, device=args.device,
                                    backend=args.sparse_backend, weights=args.weights)
        print(format_segmentation(result))
    elif args.what == "history":
        from stseg_ros.bench.history import bench_history, format_history

        result = bench_history(args.revisits, args.seed, args.segmenter or "learned",
                               progress=not args.quiet)
        print(format_history(result))
    elif args.what == "memory":
        from stseg_ros.bench.memory import bench_memory, format_memory

        result = bench_memory()
        print(format_memory(result))
    elif args.what == "ingest":
        from stseg_ros.bench.ingest import bench_ingest, format_ingest

        result = bench_ingest(args.rate, args.seconds, args.revisits, args.fusion_rate,
                              progress=not args.quiet, hogs=args.hogs, labels=args.labels)
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

        result = bench_registration(range(args.seeds), args.revisits, args.real,
                                    progress=not args.quiet)
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


def add_verbs(verbs) -> None:
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
                                     "history: map one fast-mode room of --revisits "
                                     "revisits (default 30) and report seconds per stage and "
                                     "memory at revisits 3, 10 and 30. "
                                     "soak: --revisits revisits through the "
                                     "nodes, SIGKILLing one of them at random in some "
                                     "(--kill-probability) with --hogs busy loops beside; "
                                     "exits 1 unless nothing was lost.")
    p.add_argument("what", nargs="?",
                   choices=("generation", "registration", "ingest", "segmentation", "memory",
                            "soak", "history"),
                   default="generation")
    p.add_argument("--rate", type=float, default=None,
                   help="ingest, soak: camera frame rate in Hz (default 30; soak 10)")
    p.add_argument("--seconds", type=float, default=None,
                   help="ingest, soak: seconds streamed per revisit (default 20; soak 4)")
    p.add_argument("--fusion-rate", type=float, default=None,
                   help="ingest: the accumulator's max_fusion_rate_hz (default: its own, 15; "
                        "0 fuses every frame)")
    p.add_argument("--labels", default="", metavar="VARIANT",
                   help="ingest: also stream label images of this variant (clean, typical, "
                        "...; stseg generate --labels) and fuse them")
    p.add_argument("--kill-probability", type=float, default=0.5,
                   help="soak: chance per revisit that a node is killed (default 0.5)")
    p.add_argument("--hogs", type=int, default=None,
                   help="ingest, soak: busy loops beside the nodes (default 0; soak 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="soak: random kills of this seed; history: the room's seed")
    p.add_argument("--segmenter", default="", help="history: segmenter (default learned)")
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
    p.add_argument("--revisits", type=int, default=None,
                   help="revisits (default 3; soak 20; history 30)")
    p.add_argument("--fast-scenes", type=int, default=5, help="fast-mode scenes (default 5)")
    p.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench)

