"""rd-train: train a Reverse Distillation model on good images (the paper's recipe by default).

--data DIR --good MORE adds the good images of MORE to DIR's training images: a folder of them,
or the station's review folder, whose frames marked false alarm are good parts to learn.
"""

from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

from rd_edge.core.cli import DefaultsHelpFormatter, fraction, int_at_least, passive_openmp, run_cli

from ._data import add_data_arguments, check_data_arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rd-train", description=__doc__, formatter_class=DefaultsHelpFormatter)
    add_data_arguments(p)
    p.add_argument(
        "--backbone",
        default="wide_resnet50_2",
        choices=["resnet18", "resnet34", "resnet50", "wide_resnet50_2"],
        help="teacher (frozen) and student architecture; wide_resnet50_2 is the paper's",
    )
    p.add_argument("--image-size", type=int, default=256, help="square input size, a multiple of 32")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=int, help="passes over the training images (default 200)")
    p.add_argument("--batch-size", type=int, default=16, help="images per optimizer step")
    p.add_argument("--lr", type=float, default=0.005, help="Adam learning rate, betas (0.5, 0.999)")
    p.add_argument(
        "--teacher-weights",
        default="imagenet",
        metavar="imagenet|PATH|none",
        help="imagenet (default): the official torchvision file, downloaded once into torch's "
        "hub cache ($TORCH_HOME) and hash-checked; PATH: a torchvision .pth file; none: a "
        "random teacher (offline, far weaker)",
    )
    p.add_argument(
        "--weights-url",
        metavar="URL",
        help="base URL of a mirror of the torchvision files (the file name is appended; "
        "default: $RD_EDGE_WEIGHTS_URL, else download.pytorch.org)",
    )
    p.add_argument(
        "--eval-every",
        type=int_at_least(1),
        metavar="N",
        help="every N epochs print image/pixel AUROC on the test split and keep the best "
        "checkpoint as OUT.best.pt",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the hold-out split, batches and init")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda when present"
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="write a resumable checkpoint this often, in seconds",
    )
    p.add_argument(
        "--tile",
        type=int_at_least(32),
        default=None,
        metavar="PX",
        help="train on PX x PX tiles cut at random positions from the full-resolution "
        "images (high-resolution inspection); inference tiles every frame the same way",
    )
    p.add_argument(
        "--tile-overlap",
        type=fraction,
        default=0.25,
        metavar="F",
        help="overlap of neighbouring tiles at inference, a fraction in [0, 1)",
    )
    p.add_argument("--out", default="model.pt", help="checkpoint to write (and to --resume from)")
    p.add_argument("--resume", action="store_true", help="continue from --out where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--json",
        action="store_true",
        help="end with the summary as JSON (for scripts) instead of the lines for a person; "
        "'seconds' is the training time over all runs of this model (--resume adds up), "
        "'seconds_this_run' this run's",
    )
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_data_arguments(parser, args, extra_good=True)

    passive_openmp()  # before torch is imported (in body)

    def body() -> int:
        from ..train import (  # torch is imported only once the arguments are fine
            TrainConfig,
            format_summary,
            train,
        )

        cfg = TrainConfig(
            data=args.data,
            out=args.out,
            backbone=args.backbone,
            image_size=args.image_size,
            steps=args.steps,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            teacher_weights=args.teacher_weights,
            seed=args.seed,
            device=args.device,
            checkpoint_every_s=args.checkpoint_every,
            tile=args.tile,
            tile_overlap=args.tile_overlap,
            good=args.good,
            defect=args.defect,
            masks=args.masks,
            weights_url=args.weights_url,
            eval_every=args.eval_every,
        )
        summary = train(cfg, resume=args.resume, progress=not args.quiet)
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
