"""One training epoch and one evaluation pass, with typed, explicit arguments.

The shape of torchvision's ``references/classification/train.py`` (``train_one_epoch``, ``evaluate``), with what the
recipe adds: gradient accumulation, gradient clipping, mixed precision (bf16 autocast, fp16 with a ``GradScaler``),
channels-last inputs, the per-iteration scheduler and the every-k EMA update, all counted in optimizer steps.

Metrics are computed from sums and counts (loss sum, number of correct top-1 / top-5 predictions, number of
samples), never as averages of per-batch averages: the result is exact for any batch size, and under DDP the sums
are all-reduced across ranks (``reduce_sum``) before dividing. The device is synchronised only every
``log_interval`` steps (to print the progress bar and to check that the loss is finite), not every step.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from timm_recipes.train.ema import WeightEma

__all__ = [
    "collect_logits",
    "evaluate",
    "metrics_from_counts",
    "metrics_from_logits",
    "topk_correct",
    "train_one_epoch",
    "unwrap",
]

_LOG = logging.getLogger("timm_recipes.train")

ReduceSum = Callable[[torch.Tensor], torch.Tensor]


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _to_device(
    images: torch.Tensor, targets: torch.Tensor, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, targets.to(device, non_blocking=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel and/or ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _no_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP: skip the gradient all-reduce on the micro-batches of an accumulation group before the last one."""
    if not sync and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    epoch: int,
    ema: WeightEma | None = None,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    accum_steps: int = 1,
    channels_last: bool = False,
    start_step: int = 0,
    log_interval: int = 50,
    progress: bool = True,
    reduce_sum: ReduceSum | None = None,
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, float]:
    """Train ``model`` for one pass over ``loader``.

    Every ``accum_steps`` batches (and once for the remaining batches at the end of the epoch) the optimizer
    steps, then the scheduler steps, then the EMA (if any) sees optimizer step number ``start_step + k``. Each
    micro-batch's loss is divided by the number of batches in its accumulation group, so an accumulated step
    equals one step on the concatenated batch (for a per-sample mean loss and without BatchNorm's batch effect).

    Args:
        model: The model in training form (possibly wrapped in DDP or compiled).
        loader: Yields ``(images N×C×H×W, targets)``; targets are class indices ``N`` or soft ``N×C``.
        loss_fn: ``loss_fn(logits, targets)``, a mean over the batch.
        optimizer: The optimizer.
        scheduler: Stepped once per optimizer step.
        device: Where the model lives.
        epoch: The epoch number (for the progress bar and error messages).
        ema: Updated after optimizer steps that are multiples of its ``every_k``.
        amp_dtype: ``torch.bfloat16`` / ``torch.float16`` for autocast, ``None`` for full precision.
        scaler: A ``GradScaler`` (needed with float16).
        grad_clip: Clip the global gradient norm to this value (after unscaling).
        accum_steps: Batches per optimizer step (>= 1).
        channels_last: Feed the images in channels-last memory format.
        start_step: Optimizer steps done before this epoch.
        log_interval: Batches between progress updates (each one synchronises the device once).
        progress: Show a tqdm bar on a terminal; otherwise (or when stderr is not a terminal, e.g. a cluster log
            file) a log line every ``log_interval`` batches.
        reduce_sum: All-reduce of a tensor of sums across processes (``None`` on one process).
        batch_transform: Applied to ``(images on the device, targets as loaded)`` before the forward pass, e.g.
            Mixup/CutMix on the GPU; returns the batch to train on.

    Returns:
        ``loss`` (mean over the epoch's samples), ``loss_sum``, ``n`` (samples), ``steps`` (optimizer steps this
        epoch), ``step`` (global optimizer steps after it), ``lr`` (of the first param group, now), ``time_s``,
        ``images_per_s``.

    Raises:
        RuntimeError: The loss became NaN or infinite (naming the epoch and step).
    """
    if isinstance(accum_steps, bool) or not isinstance(accum_steps, int) or accum_steps < 1:
        raise ValueError(f"accum_steps must be an integer >= 1, got {accum_steps!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip!r}")
    if log_interval < 1:
        raise ValueError(f"log_interval must be >= 1, got {log_interval!r}")
    model.train()
    bare = unwrap(model)
    num_batches = len(loader)  # type: ignore[arg-type]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen, step = 0, start_step
    progress = progress and sys.stderr.isatty()
    desc = f"epoch {epoch}" if reduce_sum is None else f"epoch {epoch} (rank-0 shard)"
    bar = tqdm(total=num_batches, desc=desc, unit="batch", disable=not progress, leave=False)
    optimizer.zero_grad(set_to_none=True)
    start = time.perf_counter()
    for i, (images, targets) in enumerate(loader):
        if batch_transform is not None:  # targets stay on the host: checked there without a device synchronisation
            images, targets = batch_transform(images.to(device, non_blocking=True), targets)
        images, targets = _to_device(images, targets, device, channels_last)
        group_start = i - i % accum_steps
        group_len = min(accum_steps, num_batches - group_start)
        last_of_group = i - group_start == group_len - 1
        with _no_sync(model, last_of_group):
            with _autocast(device, amp_dtype):
                loss = loss_fn(model(images), targets)
            scaled = loss / group_len
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += loss.detach().double() * images.shape[0]
        seen += images.shape[0]
        if last_of_group:
            if grad_clip is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            if ema is not None:
                ema.step(bare, step)
        if (i + 1) % log_interval == 0 or i + 1 == num_batches:
            mean_loss = loss_sum.item() / seen  # one device synchronisation per interval
            if not math.isfinite(mean_loss):
                bar.close()
                raise RuntimeError(
                    f"the training loss is {mean_loss} at epoch {epoch}, optimizer step {step}: lower optim.lr, "
                    "set optim.grad_clip, or check the data"
                )
            rate = seen / max(time.perf_counter() - start, 1e-9)
            lr = optimizer.param_groups[0]["lr"]
            if progress:
                bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}", refresh=False)
                bar.update(i + 1 - bar.n)
            else:  # under DDP these are this process's own numbers; the epoch line has the global ones
                _LOG.info(
                    "epoch %d [%d/%d] loss %.4f lr %.3g %.0f img/s%s", epoch, i + 1, num_batches, mean_loss, lr, rate,
                    "" if reduce_sum is None else " (this process's shard only)",
                )  # fmt: skip
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    sums = torch.tensor([loss_sum.item(), float(seen)], dtype=torch.float64, device=device)
    if reduce_sum is not None:
        sums = reduce_sum(sums)
    total_loss, total_n = sums.tolist()
    return {
        "loss": total_loss / max(total_n, 1.0),
        "loss_sum": total_loss,
        "n": int(total_n),
        "steps": step - start_step,
        "step": step,
        "lr": float(optimizer.param_groups[0]["lr"]),
        "time_s": elapsed,
        "images_per_s": total_n / max(elapsed, 1e-9),
    }


# ------------------------------------------------------------------------------------------------- evaluation
def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """How many rows have their target among the top-k logits, for each k (k capped at the number of classes).

    Ties are broken as ``torch.topk`` breaks them.
    """
    if logits.ndim != 2 or targets.ndim != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"expected logits N×C and targets N, got {tuple(logits.shape)} and {tuple(targets.shape)}")
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = top.eq(targets.view(-1, 1))
    return torch.stack([hit[:, : min(k, kmax)].any(dim=1).sum() for k in ks])


def metrics_from_counts(loss_sum: float, correct1: float, correct5: float, n: float) -> dict[str, float]:
    """``loss`` (mean), ``top1`` and ``top5`` (percent) from sums over samples, plus the sums themselves."""
    n = max(float(n), 0.0)
    div = n if n > 0 else float("nan")
    return {
        "loss": loss_sum / div,
        "top1": 100.0 * correct1 / div,
        "top5": 100.0 * correct5 / div,
        "n": int(n),
        "loss_sum": float(loss_sum),
        "correct1": int(correct1),
        "correct5": int(correct5),
    }


def metrics_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Loss, top-1 and top-5 of a whole set of logits (e.g. an ensemble's average), as :func:`evaluate` reports."""
    logits = logits.float()
    correct = topk_correct(logits, targets).tolist()
    loss_sum = F.cross_entropy(logits, targets, reduction="sum").item()
    return metrics_from_counts(loss_sum, correct[0], correct[1], targets.shape[0])


def _eval_batches(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    progress: bool,
    desc: str,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    model.eval()
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    with torch.inference_mode():
        for images, targets in tqdm(loader, total=total, desc=desc, unit="batch", disable=not progress, leave=False):
            images, targets = _to_device(images, targets, device, channels_last)
            with _autocast(device, amp_dtype):
                logits = model(images)
            yield logits.float(), targets


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = False,
    reduce_sum: ReduceSum | None = None,
    desc: str = "eval",
) -> dict[str, float]:
    """Cross-entropy loss and exact top-1 / top-5 accuracy (percent) of ``model`` over ``loader``.

    Args:
        model: The model (put in eval mode here).
        loader: Yields ``(images, class indices)``.
        device: Where the model lives.
        amp_dtype: Autocast dtype or ``None``; logits are promoted to float32 before the loss.
        channels_last: Feed channels-last inputs.
        progress: Show a tqdm bar.
        reduce_sum: All-reduce of the sums across processes (``None`` on one process).
        desc: The progress bar's label.

    Returns:
        ``loss``, ``top1``, ``top5``, ``n`` and the sums ``loss_sum``, ``correct1``, ``correct5``.
    """
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for logits, targets in _eval_batches(model, loader, device, amp_dtype, channels_last, progress, desc):
        sums[0] += F.cross_entropy(logits, targets, reduction="sum").double()
        sums[1:3] += topk_correct(logits, targets).double()
        sums[3] += targets.shape[0]
    if reduce_sum is not None:
        sums = reduce_sum(sums)
    return metrics_from_counts(*sums.tolist())


def collect_logits(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "predict",
) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits (float32, CPU, ``N×C``) and targets (``N``) of ``model`` over ``loader``, in loader order."""
    logits, targets = [], []
    for out, tgt in _eval_batches(model, loader, device, amp_dtype, channels_last, progress, desc):
        logits.append(out.cpu())
        targets.append(tgt.cpu())
    return torch.cat(logits), torch.cat(targets)
