"""Training loop for Reverse Distillation on the good images of one dataset (any layout rd_edge.data reads)."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import check_space_for, model_config, read_checkpoint, save_checkpoint
from .core.cli import Terminated, format_duration, raise_terminated, show_progress
from .core.errors import CheckpointError, ConfigError, DatasetError, OutputError, RdEdgeError
from .core.files import check_writable_file, remove_stale_temps
from .core.metadata import RESIZE_DEFAULT
from .core.scoring import load_batch
from .core.thresholds import TRAINING_THRESHOLD_SIGMAS
from .data import open_dataset, read_image
from .data.layouts import ExtraGood
from .data.mvtec import read_sample_masks
from .model import ModelConfig, RDInference, ReverseDistillation, cosine_loss
from .model.rd import Normalize
from .model.weights import IMAGENET, load_teacher_weights, reestimate_batchnorm, resolve_teacher
from .tiles import TileTraining

HOLDOUT_FRACTION = 0.2  # normal training images kept aside to calibrate the threshold...
HOLDOUT_MIN = 20  # ...and at least this many when at least twice as many images exist
THRESHOLD_SIGMAS = TRAINING_THRESHOLD_SIGMAS  # threshold = mean + 3 std of held-out normal scores


@dataclass
class TrainConfig:
    """The paper's recipe by default: 256 px, batch 16, Adam lr 0.005 betas (0.5, 0.999), 200 epochs,
    ImageNet teacher. ``data`` is a dataset folder; or ``good`` [``defect`` [``masks``]] folders."""

    data: Optional[str] = None
    out: str = "model.pt"
    backbone: str = "wide_resnet50_2"
    image_size: int = 256
    steps: Optional[int] = None
    epochs: Optional[int] = None
    batch_size: int = 16
    lr: float = 0.005
    teacher_weights: str = IMAGENET  # "imagenet" (downloaded once), a .pth path, or "none"
    seed: int = 0
    device: str = "auto"
    checkpoint_every_s: float = 300.0
    tile: Optional[int] = None  # train on random tiles of this size from full-resolution frames
    tile_overlap: float = 0.25  # overlap of the inference grid (held-out scores, metadata)
    good: Optional[str] = None
    defect: Optional[str] = None
    masks: Optional[str] = None
    weights_url: Optional[str] = None  # base URL of a mirror of the torchvision files
    eval_every: Optional[int] = None  # epochs between test-split evaluations (None: never)

    def check(self) -> None:
        """ConfigError/OutputError for settings that would fail or mislead only later: run before
        any data is loaded (an untrained model marked completed, a NaN learning rate, a size the
        model cannot take, an --out that cannot be written)."""
        for name in ("steps", "epochs"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ConfigError(
                    f"{name} must be a positive integer, got {value!r} (0 would write an "
                    f"untrained model marked completed)"
                )
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not math.isfinite(self.checkpoint_every_s) or self.checkpoint_every_s < 0:
            raise ConfigError(
                f"checkpoint_every_s must be a finite number >= 0, got {self.checkpoint_every_s!r}"
            )
        try:
            ModelConfig(backbone=self.backbone, image_size=(self.image_size, self.image_size))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"image_size {self.image_size!r} / backbone {self.backbone!r}: {exc}") from None
        check_writable_file(self.out, "checkpoint")

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        epochs = 200 if self.epochs is None else self.epochs
        return epochs * batches_per_epoch(n_train, self.batch_size)


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches in one pass over the training images: the sampler drops the ragged tail
    (BatchNorm needs full batches), so an epoch is floor(n / batch) steps, at least one."""
    return max(1, n_train // max(1, min(batch_size, n_train)))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when present; asking for cuda without one is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RdEdgeError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise RdEdgeError(f"--device must be auto, cpu or cuda; got {name!r}")
    return torch.device(name)


def load_images(paths: Sequence[Path], model: ModelConfig, chunk: int = 64) -> torch.Tensor:
    """Decode and resize once (the model's size and rule), keep uint8 in memory: [N,3,H,W] RGB
    (4x smaller than float)."""
    out = np.empty((len(paths), 3, *model.image_size), dtype=np.uint8)
    for i in range(0, len(paths), chunk):
        out[i : i + chunk] = np.round(load_batch(paths[i : i + chunk], model) * 255.0).astype(np.uint8)
    return torch.from_numpy(out)


def split_holdout(paths: List[Path], seed: int) -> tuple:
    """Deterministic split of the good training images into (train, holdout): 20 % of them, at
    least min(20, half of them), at least 2. The threshold's mean + 3 std needs enough images: 4-6
    gave thresholds that moved by half their value between two runs."""
    if len(paths) < 4:
        raise DatasetError(f"need at least 4 good training images, found {len(paths)}")
    order = np.random.default_rng(seed).permutation(len(paths))
    n_hold = max(2, int(round(HOLDOUT_FRACTION * len(paths))), min(HOLDOUT_MIN, len(paths) // 2))
    hold = sorted(order[:n_hold].tolist())
    keep = sorted(order[n_hold:].tolist())
    return [paths[i] for i in keep], [paths[i] for i in hold]


def to_float(batch_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    return batch_u8.to(device=device, dtype=torch.float32).div_(255.0)


@torch.no_grad()
def score_images(
    model: torch.nn.Module, images_u8: torch.Tensor, device: torch.device, batch_size: int
) -> np.ndarray:
    """Image scores of the fused inference module over uint8 images."""
    scores = []
    for i in range(0, len(images_u8), batch_size):
        _, s = model(to_float(images_u8[i : i + batch_size], device))
        scores.append(s.cpu().numpy())
    return np.concatenate(scores)


def score_statistics(scores: np.ndarray) -> Dict[str, float]:
    return {
        "min": float(scores.min()),
        "max": float(scores.max()),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "count": int(scores.size),
    }


def checkpoint_bytes(backbone: str) -> int:
    """About the size of a resumable checkpoint: every weight, plus Adam's two moments of each
    trainable one, plus 10% (sampler state, loss history, zip overhead). Counted on the meta
    device: nothing is allocated and the random number generators are left as they were."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = ReverseDistillation(backbone)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    moments = 2 * sum(p.numel() * p.element_size() for p in model.trainable_parameters())
    return int((weights + moments) * 1.1)


class _SigintAtStepEnd:
    """Holds Ctrl-C (and SIGTERM, where the CLI made it an interrupt) until the running training
    step has finished.

    Why Ctrl-C + --resume differed from kill -9 + --resume: the interrupt landed mid-step, after
    the batch was drawn (sampler position advanced) or the optimizer had stepped, but before the
    step was counted, and that half-step state was saved. kill -9 resumes from a periodic
    checkpoint, always written between steps. Now the first signal is raised between steps; a
    second one stops at once (nothing saved). Only the main thread can receive signals: elsewhere
    this does nothing.
    """

    def __enter__(self) -> "_SigintAtStepEnd":
        self.pending: Optional[KeyboardInterrupt] = None
        self.previous: Dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return self
        held = [signal.SIGINT]
        if signal.getsignal(signal.SIGTERM) is raise_terminated:  # rd-train: SIGTERM saves as Ctrl-C does
            held.append(signal.SIGTERM)
        for signum in held:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        interrupt = Terminated("terminated") if signum == signal.SIGTERM else KeyboardInterrupt()
        if self.pending is not None:
            raise interrupt
        self.pending = interrupt

    def raise_if_pending(self) -> None:
        if self.pending is not None:
            raise self.pending

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]


class Trainer:
    """Owns the model, optimizer and batch sampler; checkpoints atomically and resumes exactly."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True) -> None:
        cfg.check()
        self.cfg = cfg
        self.progress = progress
        self.device = pick_device(cfg.device)
        for stale in remove_stale_temps(cfg.out):  # left by a save that was killed (kill -9)
            print(f"removed {stale}, a temporary checkpoint left by an interrupted save")
        check_space_for(cfg.out, checkpoint_bytes(cfg.backbone))  # before any work, not at the first save
        resume_data = self._read_resumable(Path(cfg.out)) if resume and Path(cfg.out).is_file() else None
        self.dataset = open_dataset(
            cfg.data, good=None if cfg.data else cfg.good, defect=cfg.defect, masks=cfg.masks
        )
        if cfg.data and cfg.good:  # more good images: a folder, or a station's reviewed false alarms
            self.dataset = ExtraGood(self.dataset, cfg.good)
        self.model_cfg = ModelConfig(backbone=cfg.backbone, image_size=(cfg.image_size, cfg.image_size))
        train_paths, hold_paths = self._split()
        self.tiles: Optional[TileTraining] = None
        if cfg.tile:  # full-resolution frames; the model sees tiles of them
            self.tiles = TileTraining(
                [read_image(p) for p in train_paths],
                [read_image(p) for p in hold_paths],
                cfg.tile,
                cfg.tile_overlap,
                (cfg.image_size, cfg.image_size),
                self.model_cfg.resize,
            )
            self.train_u8 = self.tiles.bn_images()  # grid tiles: BatchNorm re-estimation only
        else:
            self.train_u8 = load_images(train_paths, self.model_cfg)
            self.hold_u8 = load_images(hold_paths, self.model_cfg)
        self.n_train, self.n_hold = len(train_paths), len(hold_paths)
        self.test_set = self._load_test_set() if cfg.eval_every and not cfg.tile else None
        if cfg.eval_every and cfg.tile:  # tiled models are scored per frame: rd-eval does that
            warnings.warn(
                "evaluation every N epochs is not done for tiled training; evaluate the "
                "checkpoint with rd-eval afterwards",
                stacklevel=2,
            )
        self.teacher: Optional[Dict[str, str]] = None
        self.best: Optional[Dict[str, float]] = None
        self.total_steps = cfg.total_steps(self.tiles.n_grid_tiles() if self.tiles else len(train_paths))
        self.step = 0
        self.loss_history: List[float] = []
        self.elapsed = self.elapsed_before = 0.0
        torch.manual_seed(cfg.seed)
        self.normalize = Normalize(self.model_cfg.mean, self.model_cfg.std).to(self.device)
        self.model = ReverseDistillation(cfg.backbone)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.perm: Optional[torch.Tensor] = None  # current epoch's order of training images
        self.pos = 0
        self.optimizer_state = None
        if resume_data is not None:
            self._resume(resume_data, Path(cfg.out))
        else:
            self._init_teacher()
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.trainable_parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        if self.optimizer_state is not None:
            self.optimizer.load_state_dict(self.optimizer_state)

    def _split(self) -> tuple:
        """(train, holdout) good images: the dataset's validation images (MVTec AD 2) when it has
        them, else 10 % of the training images."""
        validation = self.dataset.validation_paths()
        train_paths = self.dataset.train_paths()
        if len(validation) >= 2:
            if len(train_paths) < 2:
                raise DatasetError(f"need at least 2 good training images, found {len(train_paths)}")
            return train_paths, validation
        return split_holdout(train_paths, self.cfg.seed)

    def _load_test_set(self):
        """uint8 test images, masks and labels at the model size, for --eval-every."""
        try:
            samples = self.dataset.test_samples()
        except DatasetError as exc:
            raise DatasetError(f"evaluating during training needs a test split: {exc}") from None
        size = self.model_cfg.image_size
        masks = read_sample_masks(samples, size)
        labels = np.array([s.is_anomalous for s in samples], dtype=int)
        return load_images([s.path for s in samples], self.model_cfg), masks, labels

    def _init_teacher(self) -> None:
        record = resolve_teacher(
            self.cfg.teacher_weights, self.cfg.backbone, self.cfg.weights_url, progress=self.progress
        )
        if record is None:
            batches = (
                self.normalize(to_float(self.train_u8[i : i + 32], self.device))
                for i in range(0, len(self.train_u8), 32)
            )
            self.model.teacher.to(self.device)
            reestimate_batchnorm(self.model.teacher, batches)
            self.teacher = {"source": "none", "file": None, "sha256": None}
        else:
            load_teacher_weights(self.model.teacher, record["path"])
            self.teacher = {k: record[k] for k in ("source", "file", "sha256")}

    def _read_resumable(self, path: Path) -> Dict:
        """The checkpoint to resume, once it is known to be of this run: same backbone, image
        size, data, seed and tiling (checked before any data is loaded: another --data gave an
        IndexError mid-run, another --image-size continued silently)."""
        data = read_checkpoint(path)
        saved_model, saved_train = data["config"]["model"], data["config"].get("train", {})
        mine = self.cfg
        found = {
            "backbone": (saved_model.get("backbone"), mine.backbone),
            "image size": (list(saved_model.get("image_size", [])), [mine.image_size, mine.image_size]),
            "data": (data["training"].get("data_dir"), str(Path(mine.data or mine.good).resolve())),
            "seed": (saved_train.get("seed"), mine.seed),
            "tile": (saved_train.get("tile"), mine.tile),
            "resize rule": (model_config(data).resize, RESIZE_DEFAULT),  # a run trains with today's rule
        }
        differ = [f"{name} {saved!r} (now {now!r})" for name, (saved, now) in found.items() if saved != now]
        if differ:
            raise CheckpointError(
                f"cannot resume {path}: it was trained with {', '.join(differ)}; pass the "
                f"same settings to continue it, or another --out to start a new model"
            )
        return data

    def _resume(self, data: Dict, path: Path) -> None:
        self.model.load_state_dict(data["state_dict"])
        self.teacher = data.get("teacher")
        training = data["training"]
        self.step = int(training["step"])
        self.loss_history = list(training.get("loss_history", []))
        self.elapsed = float(training.get("seconds", 0.0))
        self.elapsed_before = self.elapsed  # "seconds" counts every run of this model together
        resume_state = data.get("resume")
        if resume_state:
            self.optimizer_state = resume_state["optimizer"]
            self.generator.set_state(resume_state["generator"])
            self.perm, self.pos = resume_state["perm"], int(resume_state["pos"])
        print(f"resuming from step {self.step} of {path}")

    def _next_batch(self) -> torch.Tensor:
        """Shuffled batches epoch by epoch; the permutation and position are checkpointed so a
        resumed run draws exactly the batches an uninterrupted one would."""
        bs = min(self.cfg.batch_size, len(self.train_u8))
        if self.perm is None or self.pos + bs > len(self.perm):  # drop the ragged tail: BN needs full batches
            self.perm = torch.randperm(len(self.train_u8), generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + bs]
        self.pos += bs
        return idx

    def _payload(self, completed: bool, stats=None, threshold=None) -> Dict:
        train_cfg = asdict(self.cfg)
        return {
            "config": {"model": self.model_cfg.to_dict(), "train": train_cfg},
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "score_stats": stats,
            "threshold": threshold,
            "tiling": self.tiles.tiling.to_dict() if self.tiles else None,
            "teacher": self.teacher,
            "best": self.best,
            "training": {
                "step": self.step,
                "total_steps": self.total_steps,
                "completed": completed,
                "final_loss": self.loss_history[-1] if self.loss_history else None,
                "loss_history": self.loss_history,
                "seconds": self.elapsed,
                "data_dir": str(Path(self.cfg.data or self.cfg.good).resolve()),
                "layout": self.dataset.layout,
                "n_train": self.n_train,
                "n_holdout": self.n_hold,
                "device": str(self.device),
            },
            "resume": None
            if completed
            else {
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "perm": self.perm,
                "pos": self.pos,
            },
        }

    def save(self, completed: bool = False, **kw) -> None:
        save_checkpoint(self.cfg.out, self._payload(completed, **kw))

    def fit(self) -> Dict:
        """Train to total_steps, then calibrate the threshold and write the final checkpoint."""
        self.model.train()
        last_save = time.monotonic()
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not show_progress(self.progress),
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        eta = _Estimate(self.step, self.total_steps) if self.progress else None
        mid_step = False
        try:
            with _SigintAtStepEnd() as sigint:
                while self.step < self.total_steps:
                    mid_step = True
                    self._train_step(bar)
                    mid_step = False
                    if eta is not None:
                        eta.after_step(self.step, bar)
                    if self._eval_due():
                        self._evaluate(bar)
                    if time.monotonic() - last_save > self.cfg.checkpoint_every_s:
                        self._periodic_save()
                        last_save = time.monotonic()
                    sigint.raise_if_pending()
        except KeyboardInterrupt as exc:
            bar.close()
            interrupt = type(exc)  # Terminated (SIGTERM) stays Terminated: the CLI's exit code tells
            if mid_step:  # a second signal stopped a step half-way: its state is not resumable
                raise interrupt(
                    f"stopped mid-step; {self.cfg.out} keeps the last checkpoint written"
                ) from None
            self.save()  # the CLI prints the message: one line
            raise interrupt(
                f"interrupted at step {self.step}; checkpoint written to {self.cfg.out} "
                f"(continue with --resume)"
            ) from None
        bar.close()
        return self._finish()

    def _periodic_save(self) -> None:
        """A resumable checkpoint; when it cannot be written (disk full), training goes on and the
        next interval tries again: the steps are not lost, the old checkpoint stays whole."""
        try:
            self.save()
        except OutputError as exc:
            print(f"warning: {exc}; training continues", file=sys.stderr)

    def _train_step(self, bar) -> None:
        """One optimizer step on the next batch."""
        t0 = time.perf_counter()
        batch_u8 = (
            self.tiles.batch(self.cfg.batch_size, self.generator)
            if self.tiles
            else self.train_u8[self._next_batch()]
        )  # [B,3,S,S] uint8
        x = self.normalize(to_float(batch_u8, self.device))
        teacher, student = self.model(x)
        loss = cosine_loss(teacher, student)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        dt = time.perf_counter() - t0
        self.elapsed += dt
        self.step += 1
        loss_value = loss.item()
        self.loss_history.append(round(loss_value, 6))
        bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{len(batch_u8) / dt:.1f}")
        bar.update(1)

    @property
    def steps_per_epoch(self) -> int:
        """Batches per pass over the training images (the ragged tail is dropped)."""
        return batches_per_epoch(len(self.train_u8), self.cfg.batch_size)

    @property
    def best_path(self) -> Path:
        """Where the checkpoint with the best test-split AUROC so far goes: model.best.pt beside --out."""
        out = Path(self.cfg.out)
        return out.with_name(f"{out.stem}.best{out.suffix or '.pt'}")

    def _eval_due(self) -> bool:
        every = self.cfg.eval_every
        return bool(every) and self.test_set is not None and self.step % (every * self.steps_per_epoch) == 0

    def _inference_model(self) -> RDInference:
        model = RDInference(self.model_cfg).to(self.device).eval()
        model.rd.load_state_dict(self.model.state_dict())
        return model

    @torch.no_grad()
    def _evaluate(self, bar) -> Dict[str, float]:
        """Image and pixel AUROC on the test split (as RD4AD's code reports every 10 epochs); the
        best so far (mean of the two) is also written to best_path."""
        from .metrics import auroc_or_nan

        images, masks, labels = self.test_set
        model = self._inference_model()
        maps, scores = [], []
        for i in range(0, len(images), self.cfg.batch_size):
            amap, score = model(to_float(images[i : i + self.cfg.batch_size], self.device))
            maps.append(amap[:, 0].cpu().numpy())
            scores.append(score.cpu().numpy())
        maps, scores = np.concatenate(maps), np.concatenate(scores)
        result = {
            "epoch": self.step // self.steps_per_epoch,
            "step": self.step,
            "image_auroc": auroc_or_nan(labels, scores),
            "pixel_auroc": auroc_or_nan(masks, maps),
        }
        bar.write(
            f"epoch {result['epoch']} (step {self.step}): image AUROC {_pct(result['image_auroc'])}, "
            f"pixel AUROC {_pct(result['pixel_auroc'])}"
        )
        sys.stdout.flush()  # a log file sees each evaluation as it happens
        merit = np.nanmean([result["image_auroc"], result["pixel_auroc"]])
        if np.isfinite(merit) and (self.best is None or merit > self.best["merit"]):
            self.best = {**result, "merit": float(merit)}
            stats, threshold = self._calibrate(model)
            save_checkpoint(self.best_path, self._payload(True, stats=stats, threshold=threshold))
        self.model.train()
        return result

    def _calibrate(self, model: RDInference):
        """Normal-score statistics of the held-out good images and the default threshold."""
        if self.tiles:  # per frame over all its tiles, as the runtime scores it
            scores = self.tiles.holdout_scores(model, self.device, self.cfg.batch_size)
        else:
            scores = score_images(model, self.hold_u8, self.device, self.cfg.batch_size)
        stats = score_statistics(scores)
        return stats, stats["mean"] + THRESHOLD_SIGMAS * stats["std"]

    def _finish(self) -> Dict:
        stats, threshold = self._calibrate(self._inference_model())
        self.save(completed=True, stats=stats, threshold=threshold)
        summary = {
            "steps": self.step,
            "final_loss": self.loss_history[-1] if self.loss_history else None,
            "seconds": round(self.elapsed, 1),  # training time over all runs (--resume adds up)
            "seconds_this_run": round(self.elapsed - self.elapsed_before, 1),
            "threshold": threshold,
            "threshold_rule": f"mean + {THRESHOLD_SIGMAS:g} std of held-out scores",
            "score_stats": stats,
            "n_train": self.n_train,
            "n_holdout": self.n_hold,
            "backbone": self.cfg.backbone,
            "teacher": self.teacher,
            "device": str(self.device),
            "out": str(self.cfg.out),
            "data": {k: getattr(self.cfg, k) for k in ("data", "good", "defect", "masks")},
        }
        if self.best is not None:
            summary["best"] = {**self.best, "out": str(self.best_path)}
        return summary


ETA_STEPS = 5  # steps timed for the estimate, after one warm-up step (allocation, first-call costs)


class _Estimate:
    """rd-train's "how long" line, printed once after the first few steps of a run (on stderr, so
    --json output stays parseable): seconds per step, the load average it was measured under
    (a shared machine's figure moves with it) and the time left."""

    def __init__(self, start_step: int, total_steps: int) -> None:
        self.start, self.total = start_step, total_steps
        self.t0: Optional[float] = None

    def after_step(self, step: int, bar) -> None:
        done = step - self.start
        if done == 1:
            self.t0 = time.perf_counter()  # the first step warms up: not timed
        elif self.t0 is not None and (done == 1 + ETA_STEPS or step == self.total):
            per_step = (time.perf_counter() - self.t0) / (done - 1)
            left = self.total - step
            line = (
                f"rd-train: {per_step:.2f} s/step over {done - 1} steps (load average "
                f"{_load_average()}): {left} steps left, about {format_duration(left * per_step)}"
            )
            (bar.write if not bar.disable else print)(line, file=sys.stderr)
            self.t0 = None


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):  # not on every platform
        return "n/a"


def format_summary(summary: Dict) -> str:
    """rd-train's closing lines for a person: what was trained, the threshold and how much to
    trust it, and the next commands."""
    stats, n_hold = summary["score_stats"], summary["n_holdout"]
    seconds = f"{summary['seconds']:.1f} s"
    if summary["seconds_this_run"] < summary["seconds"]:
        seconds += (
            f" of training over all runs ({summary['seconds_this_run']:.1f} s in this one, "
            f"the rest before --resume)"
        )
    loss = summary["final_loss"]
    teacher = (summary.get("teacher") or {}).get("source", "none")
    lines = [
        f"trained {summary['backbone']} ({'random' if teacher == 'none' else teacher} "
        f"teacher) on {summary['n_train']} good images for {summary['steps']} steps in {seconds}"
        + (f"; final loss {loss:.4f}" if loss is not None else ""),
        f"threshold {summary['threshold']:.6g} = {summary['threshold_rule']}: mean {stats['mean']:.6g}, "
        f"std {stats['std']:.3g} of {n_hold} held-out good images (range {stats['min']:.6g}..{stats['max']:.6g})",
    ]
    if n_hold < HOLDOUT_MIN:
        lines.append(
            f"note: {n_hold} held-out images make a rough threshold; with {2 * HOLDOUT_MIN}+ good "
            f"images {HOLDOUT_MIN} are held out; or calibrate on labelled images: "
            f"rd-calibrate {summary['out']} --data DIR"
        )
    return "\n".join(lines + closing_lines(summary))


def closing_lines(summary: Dict) -> List[str]:
    """The best epoch (when --eval-every kept one: the model to carry on with) and the next commands."""
    best, lines = summary.get("best"), []
    model = summary["out"]
    if best is not None:
        model = best["out"]
        lines.append(
            f"best: epoch {best['epoch']} (image AUROC {_pct(best['image_auroc'])}, pixel AUROC "
            f"{_pct(best['pixel_auroc'])}) in {model}; the final one is {summary['out']}"
        )
    lines.append(f"wrote {summary['out']}; next: {next_commands(model, summary.get('data') or {})}")
    return lines


def next_commands(model: str, data: Dict[str, Optional[str]]) -> str:
    """The commands that follow training, with the data options it was given: rd-eval needs
    defect images (a dataset's test split or --defect); rd-calibrate's default (a false-alarm
    bound) works on good images alone."""
    onnx = Path(model).with_suffix(".onnx")
    if data.get("data"):
        source = f"--data {data['data']}"
    else:
        source = (
            " ".join(f"--{k} {data[k]}" for k in ("good", "defect", "masks") if data.get(k)) or "--data DIR"
        )
    has_defects = bool(data.get("defect")) or not data.get("good")
    evaluate = f"rd-eval {model} {source}, " if has_defects else ""
    return f"{evaluate}rd-export {model} -o {onnx}, rd-calibrate {onnx} {source}, rd-infer {onnx} IMAGES"


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Dict:
    """Train and write ``cfg.out``; returns a summary dict."""
    return Trainer(cfg, resume=resume, progress=progress).fit()


def _pct(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.1f}"
