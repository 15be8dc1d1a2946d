"""``stseg`` verbs of training the learned segmenter and the cluster classifier."""

from __future__ import annotations

import argparse
from pathlib import Path

from stseg_ros.cli.common import file_out, folder_out


def _cmd_train(args: argparse.Namespace) -> int:
    from stseg_ros.learned.data import SampleConfig
    from stseg_ros.learned.train import TrainConfig, train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    cfg = TrainConfig(iterations=args.iterations, seed=args.seed, lr=args.lr,
                      class_balance=args.class_balance, contrast_weight=args.contrast_weight,
                      revisit_every=args.revisit_every, sample=SampleConfig(crop=args.crop))
    folder_out(args.out)
    train([Path(d) for d in args.datasets], Path(args.out), cfg, device=args.device,
          progress=not args.quiet, log=lambda line: print(line, flush=True),
          revisits=[Path(r) for r in args.revisits])
    return 0


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

    from stseg_ros.cli.common import UsageError
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

