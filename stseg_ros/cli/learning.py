"""``stseg`` verbs of training the learned segmenter and the cluster classifier."""

from __future__ import annotations

import argparse
from pathlib import Path

from stseg_ros.cli.common import UsageError, file_out, folder_out


def _cmd_train(args: argparse.Namespace) -> int:
    from stseg_ros.learned.data import SampleConfig
    from stseg_ros.learned.train import TrainConfig, train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    counts = _numbers(args.epoch_counts, int, "--epoch-counts")
    shares = _numbers(args.epoch_weights, float, "--epoch-weights")
    if len(shares) != len(counts) or sum(shares) <= 0:
        raise UsageError(f"--epoch-weights needs {len(counts)} non-negative numbers, one per "
                         "epoch count, not all 0")
    try:
        sample = SampleConfig(crop=args.crop, epoch_counts=counts,
                              epoch_weights=tuple(w / sum(shares) for w in shares))
    except ValueError as err:
        raise UsageError(str(err)) from None
    cfg = TrainConfig(iterations=args.iterations, seed=args.seed, lr=args.lr,
                      warmup=args.warmup, class_balance=args.class_balance,
                      contrast_weight=args.contrast_weight, revisit_every=args.revisit_every,
                      sample=sample)
    if args.init is not None and not Path(args.init).is_file():
        raise UsageError(f"--init {args.init}: no such weights file")
    folder_out(args.out)
    train([Path(d) for d in args.datasets], Path(args.out), cfg, device=args.device,
          progress=not args.quiet, log=lambda line: print(line, flush=True),
          revisits=[Path(r) for r in args.revisits],
          fused=[(Path(d), Path(r)) for d, r in args.fused],
          init=Path(args.init) if args.init is not None else None)
    return 0


def _numbers(text: str, kind: type, option: str) -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise UsageError(f"{option}: negative numbers in {text!r}")
    return values


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    import json

    from stseg_ros.offline.classifier_training import train_classifier

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    held = range(args.first_seed + args.seeds, args.first_seed + args.seeds + args.held_out)

    out = file_out(args.out if args.out.endswith(".npz") else args.out + ".npz", "--out")
    model, card = train_classifier(seeds, args.revisits, progress=not args.quiet,
                                   held_out=held if args.held_out else None,
                                   labelled=[Path(d) for d in args.labelled],
                                   labelled_weight=args.labelled_weight)
    model.save(out)
    print(json.dumps(card, indent=1))
    print(f"wrote {out}; use it by replacing stseg_ros/data/geometric_classifier.npz")
    return 0


def _cmd_calibrate_changes(args: argparse.Namespace) -> int:
    import json

    from stseg_ros.offline.change_calibration import calibrate

    paths = [args.dataset, args.predictions, *args.more]
    if len(paths) % 2:
        raise UsageError(f"{paths[-1]} has no partner: give DATASET PREDICTIONS pairs")
    out = file_out(args.out, "--out")
    model, card = calibrate(list(zip(paths[::2], paths[1::2], strict=True)), args.l2)
    Path(out).write_text(model.to_json())
    print(json.dumps(card, indent=1))
    print(f"wrote {out}; use it with --set association.change_confidence={out}, or ship it "
          "as stseg_ros/data/change_confidence.json")
    return 0


def add_verbs(verbs) -> None:
    p = verbs.add_parser("train", help="train the learned 4D segmenter",
                         description="Train the 4D network on generated datasets (stseg "
                                     "generate --frames 0) and, with --fused, on the fused "
                                     "scans stseg run made of bag-generated ones: samples of "
                                     "1-3 epochs of a scene (--epoch-counts), semantic, "
                                     "discriminative-embedding and cross-time contrastive "
                                     "losses. --init fine-tunes given weights. Deterministic "
                                     "for a seed; rerun with the same --out to resume. Writes "
                                     "OUT/weights.pt, OUT/checkpoint.pt and OUT/log.jsonl.")
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
    p.add_argument("--fused", nargs=2, action="append", default=[],
                   metavar=("DATASET", "RUN"),
                   help="a generated dataset with bags (stseg generate --frames N) and its "
                        "stseg run output: the fused, registered scans the mapper stored "
                        "join the training scenes, labelled from the dataset's ground truth "
                        "(repeat for more)")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="start from these weights instead of a random network (fine-tuning; "
                        "their config is the network's)")
    p.add_argument("--epoch-counts", default="1,2,3",
                   help="how many epochs of a room a sample holds, comma-separated choices "
                        "(default 1,2,3); a room with fewer gives all it has")
    p.add_argument("--epoch-weights", default="0.25,0.35,0.4",
                   help="how often each of --epoch-counts is drawn (default 0.25,0.35,0.4)")
    p.add_argument("--warmup", type=int, default=100,
                   help="steps of linear learning-rate warm-up (default 100)")
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

    p = verbs.add_parser("calibrate-changes", help="fit the change-event confidences",
                         description="Fit how likely each kind of change event is to be "
                                     "real from its object's evidence (size, objectness, "
                                     "score), on mapped generated rooms scored as stseg eval "
                                     "scores them. Map them with --set "
                                     "association.min_change_confidence=0 so that every "
                                     "candidate event is reported. Prints the reliability "
                                     "before and after (README, 'Change events').")
    p.add_argument("dataset", help="dataset directory (from stseg generate)")
    p.add_argument("predictions", help="its stseg run output (with each scene's memory.db)")
    p.add_argument("more", nargs="*", metavar="DATASET PREDICTIONS", help="further pairs")
    p.add_argument("--out", required=True, help="model file to write (.json)")
    p.add_argument("--l2", type=float, default=1.0,
                   help="L2 penalty of the logistic fit (default 1.0)")
    p.set_defaults(func=_cmd_calibrate_changes)

