"""``fit(recipe)``: the whole training run as one story that reads top to bottom.

    data → model → loss → optimizer → schedule → EMA → DDP → resume → epochs → checkpoints → early stopping

in the manner of ``main()`` in torchvision's ``references/classification/train.py``, driven by one typed
:class:`~timm_recipes.config.Recipe` instead of an argparse namespace. Each chapter of the story is a small function
below :func:`fit`, in the order they are called.

Reproducibility and resume: the data order, the augmentations and the Mixup/CutMix draws of epoch ``e`` are pure
functions of ``(run.seed, e)``; the global RNG states are saved in every checkpoint with the optimizer, scheduler,
scaler and EMA state. A run resumed from the checkpoint of epoch ``e`` (after a clean stop or a kill at any moment)
therefore continues exactly as the uninterrupted run would, bit for bit on the CPU.

Several processes (``torchrun --nproc_per_node=N -m timm_recipes train ...``): see
:mod:`timm_recipes.train.distributed` for the rules (global batch and learning rate, data shards, exact evaluation,
rank-0-only writing, timeouts). ``W`` processes with ``data.batch_size = b`` see the same images in each optimizer
step as one process with ``b`` and ``optim.accum_steps = W``; their weights agree to the last bit only without random
augmentation (the per-image augmentation and Mixup/CutMix draws are seeded by ``(seed, epoch, rank)``).

Run folder (``run.output_dir``, ``{name}`` = the recipe's name)::

    recipe.yaml  metrics.jsonl  metrics.csv  curves.png  final.json  checkpoints/{last,best}.json + ckpt-*/
    [sanity_check.json]  (``run.sanity_check``: the checks of :mod:`timm_recipes.train.sanity`, run before training)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from timm_recipes._files import check_writable
from timm_recipes.config import Recipe, recipe_from_dict, recipe_to_dict, save_recipe
from timm_recipes.train.builders import (
    DataSplits,
    build_datasets,
    build_eval_dataset,
    create_ema,
    create_eval_loader,
    create_mixing,
    create_recipe_model,
    create_schedule,
    create_train_loader,
    load_checkpoint_model,
    resolve_init,
    resolve_monitor,
    with_data_classes,
    with_init_preprocessing,
)
from timm_recipes.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_bytes,
    capture_rng_state,
    check_compatible,
    damaged,
    open_checkpoint,
    repair_best_tag,
    restore_rng_state,
    save_checkpoint,
)
from timm_recipes.train.distributed import DepthDraws, Distributed, resolve_device
from timm_recipes.train.ema import WeightEma
from timm_recipes.train.engine import evaluate, train_one_epoch
from timm_recipes.train.finetune import FineTuneControl
from timm_recipes.train.losses import create_loss
from timm_recipes.train.metrics import MetricsLog
from timm_recipes.train.optim import create_optimizer
from timm_recipes.train.progress import ensure_progress_output
from timm_recipes.train.schedules import LRScheduler

__all__ = [
    "DataSplits",
    "Distributed",
    "EarlyStopping",
    "FitResult",
    "build_datasets",
    "build_eval_dataset",
    "create_eval_loader",
    "create_recipe_model",
    "fit",
    "load_checkpoint_model",
    "resolve_device",
]

_LOG = logging.getLogger("timm_recipes.train")
_PLOT_EVERY_S = 60.0  # redraw curves.png at most once a minute during the run (and always at the end)


# ================================================================================================ result
@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        run_dir: The run folder.
        monitor: ``"ema"`` or ``"raw"``: which weights' validation top-1 chose the best epoch.
        best_metric: That top-1 (percent) at the best epoch.
        best_epoch: The best epoch (1-based).
        epochs_completed: Epochs trained in total (before and after a resume).
        stopped_early: Whether early stopping ended the run.
        final: Metrics of the best checkpoint: ``val_top1``, ``val_top5``, ``val_loss`` and with ``ema_`` prefix for
            the EMA weights, and ``test_*`` / ``ema_test_*`` when the data has a test split.
        history: The per-epoch records (as in ``metrics.jsonl``).
        best_checkpoint: The best checkpoint's folder.
        last_checkpoint: The last checkpoint's folder.
    """

    run_dir: Path
    monitor: str
    best_metric: float | None
    best_epoch: int | None
    epochs_completed: int
    stopped_early: bool
    final: dict[str, float]
    history: list[dict[str, Any]] = field(repr=False)
    best_checkpoint: Path | None
    last_checkpoint: Path | None

    @property
    def metrics_jsonl(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def metrics_csv(self) -> Path:
        return self.run_dir / "metrics.csv"

    @property
    def curves_png(self) -> Path:
        return self.run_dir / "curves.png"

    @property
    def recipe_yaml(self) -> Path:
        return self.run_dir / "recipe.yaml"


@dataclass
class EarlyStopping:
    """Early stopping on validation top-1: keep the best epoch, stop after ``patience`` epochs without a new best.

    The lecture: training time is a hyper-parameter; using the weights that were best on the validation set selects
    it. An epoch is a new best when its top-1 is strictly higher than the best so far, or equal with a strictly lower
    validation loss: on small validation sets top-1 saturates (every model gets the same few images wrong) while the
    model still improves, and the loss breaks those ties. Otherwise the earlier epoch is kept.

    Args:
        patience: Epochs without a new best after which to stop (``None``: never stop early).
    """

    patience: int | None = None
    best: float | None = None
    best_loss: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0

    def update(self, top1: float, epoch: int, loss: float | None = None) -> bool:
        """Record the validation ``top1`` (and ``loss``) of ``epoch``; returns whether it is the new best."""
        tie_broken = top1 == self.best and loss is not None and self.best_loss is not None and loss < self.best_loss
        if self.best is None or top1 > self.best or tie_broken:
            self.best, self.best_loss, self.best_epoch, self.bad_epochs = float(top1), loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_loss, self.best_epoch = state["best"], state["best_loss"], state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])


# ================================================================================================ the story
def fit(
    recipe: Recipe,
    *,
    resume: bool | str | os.PathLike[str] = False,
    output_dir: str | os.PathLike[str] | None = None,
    stop_after_epoch: int | None = None,
    overwrite: bool = False,
    verbose: bool | None = None,
) -> FitResult:
    """Train a model as ``recipe`` says, with checkpoints, resume and early stopping.

    Args:
        recipe: The resolved recipe.
        resume: ``False`` starts a new run; ``True`` continues a run from its last checkpoint: the one in
            ``output_dir`` when given, else the interrupted one (no ``final.json`` yet, the latest if several) among
            ``run.output_dir`` and its ``-2``, ``-3``, … siblings; a path (checkpoint folder, tag file,
            ``checkpoints/`` or run folder) continues from there. The schedule cannot be changed on resume (a
            finished run is not extended: the learning rate curve was computed for its ``schedule.epochs``).
        output_dir: The run folder (default: ``recipe.run.output_dir``; when resuming from a path, that run's
            folder). An explicit ``output_dir`` that already holds a run is refused unless ``resume`` or
            ``overwrite``; the default folder is never reused: ``-2``, ``-3``, … is appended instead (and said).
        stop_after_epoch: End this call after that epoch, leaving a resumable run (the schedule still spans
            ``schedule.epochs``).
        overwrite: Replace the run that ``output_dir`` holds (its checkpoints, metrics, recipe, final and FixRes
            results are deleted when the new run starts; other files are kept).
        verbose: Print progress lines (logger ``timm_recipes``) to stderr. ``None`` (default): when
            ``run.progress`` is on and the caller has not configured logging for ``timm_recipes`` or the root logger.

    Returns:
        A :class:`FitResult`.

    Raises:
        ValueError: A bad combination in the recipe, data that do not fit it, or an unusable checkpoint
            (:class:`~timm_recipes.train.checkpoint.CheckpointError`); the message names the key or the file.
        FileNotFoundError: A missing data folder, or nothing to resume.
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    if stop_after_epoch is not None and (isinstance(stop_after_epoch, bool) or stop_after_epoch < 1):
        raise ValueError(f"stop_after_epoch must be an integer >= 1 or None, got {stop_after_epoch!r}")
    if output_dir is not None and resume is False and not overwrite and _holds_run(Path(output_dir)):
        raise ValueError(
            f"output_dir {str(output_dir)!r} already holds a run: pass resume=True to continue it or overwrite=True "
            "to replace it (CLI: --resume / --overwrite)"
        )
    ensure_progress_output(verbose if verbose is not None else recipe.run.progress)
    # DDP: rank, world size, this rank's device, the process group (torchrun's environment; one process without it).
    with Distributed.from_env(recipe.run.device) as dist:  # on exit: group torn down, a lost peer reported clearly
        return _fit(recipe, dist, resume, output_dir, stop_after_epoch, overwrite)


def _fit(
    recipe: Recipe,
    dist: Distributed,
    resume: bool | str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None,
    stop_after_epoch: int | None,
    overwrite: bool = False,
) -> FitResult:
    """The story of :func:`fit`, on each rank."""
    run, opt, sched = recipe.run, recipe.optim, recipe.schedule
    device = dist.device
    amp_dtype, scaler = _mixed_precision(run.amp, device)
    checkpoint = _checkpoint_to_resume(resume, recipe, output_dir)
    # model.init: the starting weights, read and checked before anything is written; unset preprocessing comes from
    # their pretrained_cfg (a resumed run keeps what its first part resolved).
    recipe = with_data_classes(recipe)  # model.num_classes: null -> the class folders of data.root/train
    source = resolve_init(recipe) if checkpoint is None else None
    recipe = with_init_preprocessing(recipe, source) if checkpoint is None else _saved_preprocessing(recipe, checkpoint)
    run_dir = dist.broadcast_object(_prepare_run_dir(recipe, output_dir, checkpoint, dist, overwrite))  # rank 0's
    dist.run_dir = run_dir
    if dist.is_main:
        check_writable(run_dir, "run folder")  # before the data and the model are built, not at the first write
    sanity = _sanity_check(recipe, dist) if run.sanity_check and checkpoint is None else None  # before seeding
    _seed_everything(run.seed, deterministic=run.deterministic, device=device)  # the same initial weights everywhere

    # 1. Data: datasets with their pipelines, then loaders whose randomness depends on (seed, epoch) only.
    data = build_datasets(recipe)
    mix_generator = torch.Generator()
    collate, mixer = create_mixing(recipe, data.num_classes, device, mix_generator)
    train_loader = create_train_loader(recipe, data, dist, device, collate, mixer)
    if getattr(train_loader, "applies_batch_transform", False):  # CUDA: mixed on the GPU by the prefetcher
        mixer = None
    val_loader = create_eval_loader(recipe, data.val, dist, device)
    steps_per_epoch = math.ceil(len(train_loader) / opt.accum_steps)

    # 2. Model.
    model = create_recipe_model(recipe, num_classes=data.num_classes, source=source).to(device)
    if source is not None:
        _LOG.info(
            "initial weights: %s (%s%s)", source.init, source.location, f", {source.weights}" * bool(source.weights)
        )
    if run.channels_last:
        model = model.to(memory_format=torch.channels_last)

    # 3. Loss: label smoothing once, in the mixer's soft targets when Mixup/CutMix is on, else in the loss.
    loss_fn = create_loss(opt.label_smoothing, soft_targets=recipe.mix.enabled)

    # 4. Optimizer, with the learning rate scaled to the global batch when the recipe states it per B images.
    global_batch = recipe.data.batch_size * opt.accum_steps * dist.world_size
    lr = opt.lr * global_batch / opt.lr_base_batch if opt.lr_base_batch else opt.lr
    extra = {"eps": opt.eps} if opt.eps is not None else {}
    optimizer = create_optimizer(
        model,
        opt.name,
        lr,
        opt.weight_decay,
        momentum=opt.momentum,
        decay_norm_and_bias=opt.decay_norm_and_bias,
        layer_decay=opt.layer_decay,
        head_lr_scale=opt.head_lr_scale,
        **extra,
    )

    # 5. Schedule, stepped once per optimizer step.
    scheduler = create_schedule(recipe, optimizer, steps_per_epoch, lr)

    # 6. EMA of the weights (of the bare model, before any wrapper).
    ema = create_ema(recipe, model, dist)
    monitor = resolve_monitor(recipe, ema)

    # 7. DDP (identity on one process), then optional compilation. Stochastic depth in "batch" mode draws from
    #    (seed, epoch, step), the same blocks on every rank, and leaves the dropped blocks' parameters unused.
    depth_draws = DepthDraws.attach(model, seed=run.seed, accum_steps=opt.accum_steps)
    unused = depth_draws is not None or opt.freeze_backbone_epochs > 0  # dropped blocks, a frozen backbone
    train_model = dist.wrap(model, device, find_unused_parameters=unused, sync_bn=run.sync_bn)
    eval_model = train_model if dist.world_size == 1 else model  # ranks evaluate unequal shards: no DDP collectives
    # Fine-tuning: only the classifier trains for the first optim.freeze_backbone_epochs; model.freeze_bn. (After the
    # wrap: run.sync_bn replaces the BatchNorm modules.)
    tune = FineTuneControl(model, freeze_backbone_epochs=opt.freeze_backbone_epochs, freeze_bn=recipe.model.freeze_bn)
    if run.compile:
        train_model = torch.compile(train_model)
        eval_model = train_model if dist.world_size == 1 else torch.compile(model)

    # 8. Resume: weights, optimizer, schedule, scaler, EMA, RNG states and the loop's counters.
    log = MetricsLog(run_dir, enabled=dist.is_main)
    stopper = EarlyStopping(run.patience)
    epoch, step = 0, 0
    if checkpoint is not None:
        epoch, step = _resume(checkpoint, recipe, model, optimizer, scheduler, scaler, ema, stopper, steps_per_epoch)
    if dist.is_main:  # the first write of the run: everything above has been checked
        if overwrite and checkpoint is None:
            clear_run(run_dir)
        if checkpoint is not None and checkpoint.path.parent.parent == run_dir:
            repaired = repair_best_tag(run_dir / "checkpoints")
            if repaired is not None:
                _LOG.warning("best.json lagged behind the manifests (a kill between the tag writes): now %s", repaired)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, run_dir / "recipe.yaml")
        log.truncate(epoch)
        if sanity is not None:
            sanity.save(run_dir / "sanity_check.json")
    _announce(recipe, run_dir, device, data, global_batch, lr, steps_per_epoch, ema, checkpoint, dist)

    # 9. Epochs: train, evaluate raw and EMA weights, log, checkpoint, stop early when the monitor stalls.
    last_plot = time.perf_counter()
    last_epoch = sched.epochs if stop_after_epoch is None else min(sched.epochs, stop_after_epoch)
    while epoch < last_epoch and not stopper.should_stop:
        epoch, epoch_start = epoch + 1, time.perf_counter()
        train_loader.set_epoch(epoch - 1)
        mix_generator.manual_seed(_epoch_seed(run.seed, epoch, dist.rank))
        if depth_draws is not None:
            depth_draws.set_epoch(epoch)
        tune.set_epoch(epoch)
        if dist.world_size > 1:  # dropout etc.: different draws on each rank, a function of (seed, epoch, rank)
            _seed_global_rngs(_epoch_seed(run.seed, epoch, dist.rank) ^ 0x5EED)
        train = train_one_epoch(
            train_model, train_loader, loss_fn, optimizer, scheduler, device=device, epoch=epoch, ema=ema,
            amp_dtype=amp_dtype, scaler=scaler, grad_clip=opt.grad_clip, accum_steps=opt.accum_steps,
            channels_last=run.channels_last, start_step=step, log_interval=run.log_interval,
            progress=run.progress and dist.is_main, reduce_sum=dist.reduce_sum, batch_transform=mixer,
        )  # fmt: skip
        step = train["step"]
        _synchronise(model, ema, dist)  # BatchNorm statistics averaged over the ranks, then checked equal everywhere
        val = _evaluate(eval_model, val_loader, device, amp_dtype, run.channels_last, dist)
        ema_val = {}
        if ema is not None and recipe.ema.eval:
            ema_val = _evaluate(ema.module, val_loader, device, amp_dtype, run.channels_last, dist)
        watched = ema_val if monitor == "ema" else val
        improved = stopper.update(watched["top1"], epoch, watched["loss"])
        record = _epoch_record(epoch, train, val, ema_val, stopper, time.perf_counter() - epoch_start)
        log.append(record)
        if time.perf_counter() - last_plot > _PLOT_EVERY_S:
            log.plot()
            last_plot = time.perf_counter()
        _LOG.info(_epoch_line(record, monitor, dist.world_size))
        if dist.is_main:  # 10. Checkpoint: `last` every epoch, `best` when the monitored metric improved.
            state = _training_state(optimizer, scheduler, scaler, ema, stopper, epoch, step, steps_per_epoch)
            save_checkpoint(
                run_dir / "checkpoints", model_state=model.state_dict(), model_name=recipe.model.name,
                num_classes=data.num_classes, epoch=epoch, step=step, recipe=recipe_to_dict(recipe),
                training_state=state, ema_state=ema.module.state_dict() if ema is not None else None, metrics=record,
                tags=("last", "best") if improved else ("last",),
            )  # fmt: skip
        dist.barrier()
    tune.close()
    if stopper.should_stop:
        _LOG.info("early stopping: no new best %s validation result for %d epochs", monitor, run.patience)
    log.plot()

    # 11. The best checkpoint, evaluated on val (and test when there is one), raw and EMA weights.
    final = _final_evaluation(recipe, run_dir, data, model, ema, device, amp_dtype, dist)
    if depth_draws is not None:
        depth_draws.detach()
    ckpt_dir = run_dir / "checkpoints"
    return FitResult(
        run_dir=run_dir,
        monitor=monitor,
        best_metric=stopper.best,
        best_epoch=stopper.best_epoch,
        epochs_completed=epoch,
        stopped_early=stopper.should_stop,
        final=final,
        history=list(log.records),
        best_checkpoint=_tag_path(ckpt_dir, "best"),
        last_checkpoint=_tag_path(ckpt_dir, "last"),
    )


# ================================================================================================ sanity checks
def _sanity_check(recipe: Recipe, dist: Distributed) -> Any:
    """``run.sanity_check``: the lecture's checks on rank 0 before anything is written; a failure stops every rank."""
    from timm_recipes.train.sanity import SanityCheckError, run_checks

    report = run_checks(recipe) if dist.is_main else None
    if report is not None:
        _LOG.info("sanity checks:\n%s", report.text())
    failed = dist.broadcast_object([f"{c.name}: {c.message}" for c in report.failed] if report is not None else None)
    if failed:
        raise SanityCheckError("run.sanity_check: " + " | ".join(failed) + " (nothing was trained)")
    return report


# ================================================================================================ device, precision
def _mixed_precision(amp: str, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """Autocast dtype and grad scaler: bf16 on CUDA or CPU, fp16 on CUDA only (with a ``GradScaler``)."""
    if amp == "none":
        return None, None
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError(f"run.amp='fp16' needs a CUDA device, got {device}; use run.amp='bf16' on the CPU")
        return torch.float16, torch.amp.GradScaler("cuda")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"run.amp='bf16' is not supported by {torch.cuda.get_device_name(device)}; use 'fp16'")
    return torch.bfloat16, None


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of the Mixup/CutMix draws of one epoch on one rank."""
    return int(np.random.SeedSequence([seed, epoch, rank, 0x6D6978]).generate_state(1, np.uint64)[0] >> 1)


def _seed_global_rngs(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_everything(seed: int, *, deterministic: bool, device: torch.device) -> None:
    _seed_global_rngs(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


# ================================================================================================ run folder
def _default_run_dir(recipe: Recipe) -> Path:
    return Path(recipe.run.output_dir.format(name=recipe.name))


def _checkpoint_to_resume(
    resume: bool | str | os.PathLike[str], recipe: Recipe, output_dir: str | os.PathLike[str] | None
) -> Checkpoint | None:
    if resume is False or resume is None:
        return None
    if resume is True:
        folder = Path(output_dir) if output_dir is not None else find_run_to_resume(_default_run_dir(recipe))
        if not (folder / "checkpoints" / "last.json").exists():
            raise FileNotFoundError(f"resume: no checkpoint to resume in {str(folder)!r} (checkpoints/last.json)")
        return open_checkpoint(folder, tag="last")
    return open_checkpoint(resume, tag="last")


def find_run_to_resume(base: str | os.PathLike[str]) -> Path:
    """The run a bare ``resume=True`` continues: among ``base`` and its ``-2``, ``-3``, … siblings that hold a
    checkpoint, the interrupted one (no ``final.json``), the most recent if several; else the most recent run;
    ``base`` when none holds a checkpoint."""
    base = Path(base)
    candidates = [base]
    if base.parent.is_dir():
        prefix = f"{base.name}-"
        candidates += [
            p for p in base.parent.iterdir() if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
        ]
    runs = [p for p in candidates if (p / "checkpoints" / "last.json").is_file()]
    if not runs:
        return base
    interrupted = [p for p in runs if not (p / "final.json").exists()]
    chosen = max(interrupted or runs, key=lambda p: (p / "checkpoints" / "last.json").stat().st_mtime)
    if len(runs) > 1 or chosen != base:
        state = "interrupted" if interrupted else "most recent (every one has finished)"
        _LOG.info("resume: %d runs of %s; continuing the %s one, %s", len(runs), base, state, chosen)
    return chosen


def _holds_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("checkpoints", "metrics.jsonl"))


_RUN_FILES = ("checkpoints", "metrics.jsonl", "metrics.csv", "curves.png", "final.json", "recipe.yaml", "fixres")


def clear_run(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete the files a run wrote in ``run_dir`` (``--overwrite``); anything else there is kept."""
    import shutil

    removed = []
    for name in _RUN_FILES:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    if removed:
        _LOG.info("overwrite: replaced the previous run in %s", run_dir)
    return removed


def _prepare_run_dir(
    recipe: Recipe,
    output_dir: str | os.PathLike[str] | None,
    checkpoint: Checkpoint | None,
    dist: Distributed,
    overwrite: bool = False,
) -> Path:
    """The run folder: the resumed run's, or a fresh one (never one that already holds a run). Nothing is written."""
    if checkpoint is not None:
        run_dir = Path(output_dir) if output_dir is not None else checkpoint.run_dir
    else:
        run_dir = Path(output_dir) if output_dir is not None else _default_run_dir(recipe)
        base, n = run_dir, 1
        while _holds_run(run_dir) and not overwrite:  # overwrite: the run in the folder itself is replaced
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
        if run_dir != base:
            _LOG.info("%s already holds a run; this run goes to %s", base, run_dir)
    return run_dir


# ================================================================================================ resume
def _saved_preprocessing(recipe: Recipe, checkpoint: Checkpoint) -> Recipe:
    """Unset ``aug.mean`` / ``std`` / ``interpolation`` of a resumed run: the values its first part resolved."""
    unset = [k for k in ("mean", "std", "interpolation") if getattr(recipe.aug, k) is None]
    if not unset:
        return recipe
    saved = recipe_from_dict(checkpoint.recipe()).aug
    return recipe.replace(aug=dataclasses.replace(recipe.aug, **{k: getattr(saved, k) for k in unset}))


def _resume(
    checkpoint: Checkpoint,
    recipe: Recipe,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler | None,
    ema: WeightEma | None,
    stopper: EarlyStopping,
    steps_per_epoch: int,
) -> tuple[int, int]:
    """Restore everything from ``checkpoint``; returns ``(epochs done, optimizer steps done)``."""
    _refuse_schedule_changes(checkpoint, recipe)
    _warn_recipe_changes(checkpoint, recipe)
    name, classes = recipe.model.name, recipe.model.num_classes
    model.load_state_dict(check_compatible(checkpoint, model, model_name=name, num_classes=classes))
    state = checkpoint.training_state(required=_STATE_SECTIONS)
    try:
        return _restore(checkpoint, state, optimizer, scheduler, scaler, ema, stopper, steps_per_epoch, name, classes)
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        raise damaged(checkpoint.path, f"its training state does not fit this run: {error_text(err)}") from None


_STATE_SECTIONS = ("optimizer", "scheduler", "scaler", "ema", "early_stopping", "rng", "loop")


def error_text(err: BaseException) -> str:
    """An exception as one short line (KeyError's quotes and multi-line torch messages flattened)."""
    text = " ".join(str(err).split())
    return f"missing {text}" if isinstance(err, KeyError) else text or type(err).__name__


def _restore(
    checkpoint: Checkpoint,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler | None,
    ema: WeightEma | None,
    stopper: EarlyStopping,
    steps_per_epoch: int,
    name: str,
    classes: int,
) -> tuple[int, int]:
    loop = dict(state["loop"])
    if loop["steps_per_epoch"] != steps_per_epoch:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} was trained with {loop['steps_per_epoch']} optimizer steps per epoch, this "
            f"recipe gives {steps_per_epoch}: data.batch_size, optim.accum_steps, the data or the number of "
            "processes (WORLD_SIZE) changed"
        )
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if ema is not None:
        if not checkpoint.has_ema:
            raise CheckpointError(f"checkpoint {checkpoint.path} has no EMA weights but ema.enabled is true")
        weights = check_compatible(checkpoint, ema.module, model_name=name, num_classes=classes, which="ema")
        ema.load_state_dict(state["ema"], weights)
    stopper.load_state_dict(state["early_stopping"])
    restore_rng_state(state["rng"])
    return int(loop["epoch"]), int(loop["step"])


_RESUME_FREE_KEYS = ("run.progress", "run.log_interval", "run.output_dir", "data.num_workers", "data.pin_memory")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, Mapping) else {key: v})
    return out


def _refuse_schedule_changes(checkpoint: Checkpoint, recipe: Recipe) -> None:
    """A resumed run keeps its schedule: the learning rate curve of ``schedule.*`` was fixed when the run started.

    Resuming a finished run with more epochs would otherwise train the extra epochs at the schedule's final rate
    (0 for a cosine), so it is refused with the way to do it instead.
    """
    try:
        saved = _flatten(recipe_to_dict(recipe_from_dict(checkpoint.recipe())))
    except (ValueError, TypeError):
        return  # reported by _warn_recipe_changes
    now = _flatten(recipe_to_dict(recipe))
    keys = sorted(k for k in now if k.startswith("schedule.") and saved.get(k) != now[k])
    changed = [f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in keys]
    if changed:
        raise ValueError(
            f"resume: the schedule of {checkpoint.run_dir} cannot change ({', '.join(changed)}): its learning rate "
            "curve was computed for the original schedule, so the extra epochs would not follow it. Start a new run "
            "instead (e.g. with a new --output), or resume with the original schedule"
        )


def _warn_recipe_changes(checkpoint: Checkpoint, recipe: Recipe) -> None:
    try:
        saved = _flatten(recipe_to_dict(recipe_from_dict(checkpoint.recipe())))
    except (ValueError, TypeError):
        saved = _flatten(checkpoint.recipe() or {})
    now = _flatten(recipe_to_dict(recipe))
    changed = sorted(k for k in now if k not in _RESUME_FREE_KEYS and saved.get(k) != now[k])
    if changed:
        warnings.warn(
            f"resuming {checkpoint.path} with a recipe that differs from the checkpoint's in {', '.join(changed)}: "
            "the run will not match an uninterrupted one",
            stacklevel=4,
        )


def _training_state(
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler | None,
    ema: WeightEma | None,
    stopper: EarlyStopping,
    epoch: int,
    step: int,
    steps_per_epoch: int,
) -> dict[str, Any]:
    return {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "early_stopping": stopper.state_dict(),
        "rng": capture_rng_state(),
        "loop": {"epoch": epoch, "step": step, "steps_per_epoch": steps_per_epoch},
    }


# ================================================================================================ epochs
def _evaluate(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    dist: Distributed,
) -> dict[str, float]:
    return evaluate(
        model, loader, device=device, amp_dtype=amp_dtype, channels_last=channels_last, reduce_sum=dist.reduce_sum
    )


def _synchronise(model: nn.Module, ema: WeightEma | None, dist: Distributed) -> None:
    """Several processes: average the BatchNorm statistics of the model and the EMA, then check the ranks agree."""
    if dist.world_size == 1:
        return
    dist.sync_buffers(model)
    dist.check_in_sync(model, "model weights")
    if ema is not None:
        dist.sync_buffers(ema.module)
        dist.check_in_sync(ema.module, "EMA weights")


def _epoch_record(
    epoch: int,
    train: Mapping[str, float],
    val: Mapping[str, float],
    ema_val: Mapping[str, float],
    stopper: EarlyStopping,
    seconds: float,
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "step": train["step"],
        "lr": train["lr"],
        "train_loss": train["loss"],
        "train_images_per_s": train["images_per_s"],
        "train_time_s": train["time_s"],
        "val_loss": val["loss"],
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "ema_val_loss": ema_val.get("loss"),
        "ema_val_top1": ema_val.get("top1"),
        "ema_val_top5": ema_val.get("top5"),
        "best_top1": stopper.best,
        "best_epoch": stopper.best_epoch,
        "epoch_time_s": seconds,
    }


def _epoch_line(r: Mapping[str, Any], monitor: str, world_size: int = 1) -> str:
    ema = f" | EMA {r['ema_val_top1']:.2f} %" if r.get("ema_val_top1") is not None else ""
    scope = f" (all {world_size} processes)" if world_size > 1 else ""
    return (
        f"epoch {r['epoch']:3d} | train loss {r['train_loss']:.4f}{scope} | val top-1 {r['val_top1']:.2f} %{ema} | "
        f"lr {r['lr']:.3g} | {r['train_images_per_s']:.0f} img/s{scope} | {r['epoch_time_s']:.1f} s | "
        f"best ({monitor}) {r['best_top1']:.2f} % @ {r['best_epoch']}"
    )


def _announce(
    recipe: Recipe,
    run_dir: Path,
    device: torch.device,
    data: DataSplits,
    global_batch: int,
    lr: float,
    steps_per_epoch: int,
    ema: WeightEma | None,
    checkpoint: Checkpoint | None,
    dist: Distributed,
) -> None:
    if not dist.is_main:
        return
    _LOG.info("run %s -> %s (device %s, %d process(es))", recipe.name, run_dir, device, dist.world_size)
    _LOG.info(
        "data %s: %d train / %d val%s images, %d classes; global batch %d, lr %.4g, %d steps per epoch",
        data.origin, len(data.train), len(data.val), f" / {len(data.test)} test" if data.test is not None else "",
        data.num_classes, global_batch, lr, steps_per_epoch,
    )  # fmt: skip
    if dist.world_size > 1:
        rule = (
            f"optim.lr={recipe.optim.lr:g} per {recipe.optim.lr_base_batch} images, scaled to the global batch"
            if recipe.optim.lr_base_batch
            else f"optim.lr={recipe.optim.lr:g} is the rate of the global batch (set optim.lr_base_batch to scale it)"
        )
        _LOG.info(
            "global batch %d = %d per process x %d accumulation steps x %d processes; %s",
            global_batch, recipe.data.batch_size, recipe.optim.accum_steps, dist.world_size, rule,
        )  # fmt: skip
    if ema is not None:
        _LOG.info(
            "EMA: ema.decay=%g rescaled to an effective decay of %.6f per update (every %d optimizer steps; "
            "1 - min(1, (1 - decay) x %d processes x %d images x %d steps / %d epochs), see EmaConfig)",
            recipe.ema.decay, ema.decay, ema.every_k, dist.world_size,
            recipe.data.batch_size * recipe.optim.accum_steps, ema.every_k, recipe.schedule.epochs,
        )  # fmt: skip
    if checkpoint is not None:
        _LOG.info("resuming from %s (epoch %d, step %d)", checkpoint.path, checkpoint.epoch, checkpoint.step)


# ================================================================================================ the end
def _tag_path(ckpt_dir: Path, tag: str) -> Path | None:
    try:
        return open_checkpoint(ckpt_dir, tag=tag, verify=False).path
    except (FileNotFoundError, CheckpointError):
        return None


def _final_evaluation(
    recipe: Recipe,
    run_dir: Path,
    data: DataSplits,
    model: nn.Module,
    ema: WeightEma | None,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    dist: Distributed,
) -> dict[str, float]:
    """Load the best checkpoint into the (bare) models and evaluate it on val and test; write ``final.json``."""
    ckpt_dir = run_dir / "checkpoints"
    if not dist.broadcast_object((ckpt_dir / "best.json").exists()):  # as rank 0, the writer, sees it
        return {}
    best = open_checkpoint(ckpt_dir, tag="best")
    models = {"": model}
    model.load_state_dict(best.weights("model"))
    if ema is not None and best.has_ema:
        ema.module.load_state_dict(best.weights("ema"))
        models["ema_"] = ema.module
    splits = {"val": data.val, **({"test": data.test} if data.test is not None else {})}
    final: dict[str, float] = {"epoch": best.epoch}
    for split, dataset in splits.items():
        loader = create_eval_loader(recipe, dataset, dist, device)
        for prefix, m in models.items():
            result = _evaluate(m, loader, device, amp_dtype, recipe.run.channels_last, dist)
            final.update({f"{prefix}{split}_{k}": result[k] for k in ("top1", "top5", "loss", "n")})
    if dist.is_main:
        atomic_write_bytes(run_dir / "final.json", (json.dumps(final, indent=1) + "\n").encode())
        gap = ema_gap(final)
        if gap is not None and gap >= EMA_WORSE_POINTS:
            _LOG.warning(
                "the EMA weights of the best checkpoint (epoch %d) are %.1f points below its raw weights on val "
                "(%.2f %% vs %.2f %%): with %d epochs the average is dominated by early weights; `timm-recipes export` "
                "(weights auto) exports the raw ones; consider ema.decay, ema.every_k or run.monitor=raw",
                best.epoch, gap, final["ema_val_top1"], final["val_top1"], recipe.schedule.epochs,
            )  # fmt: skip
    return final


EMA_WORSE_POINTS = 2.0
"""Val top-1 points by which EMA weights must trail the raw weights of the same checkpoint to count as clearly worse."""


def ema_gap(final: Mapping[str, Any]) -> float | None:
    """Raw minus EMA val top-1 of ``final.json`` (points), or ``None`` when either is missing."""
    raw, ema = final.get("val_top1"), final.get("ema_val_top1")
    return None if raw is None or ema is None else float(raw) - float(ema)
