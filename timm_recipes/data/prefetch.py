"""The GPU path: workers emit uint8, the batch is copied on a side stream, normalised, mixed and laid out there.

On a GPU the loader workers should do only what needs the CPU (decoding, cropping, Cutout) and hand over uint8
C×H×W images, a quarter of the float32 bytes. :class:`DevicePrefetcher` then, for batch ``k + 1`` while the model
still runs batch ``k`` (the design of timm's ``timm.data.loader.PrefetchLoader``):

1. copies images and targets to the device with ``non_blocking=True`` from the loader's pinned memory, on a side
   stream;
2. converts to float (channels-last at the same time, if asked) and normalises with exactly the constants and
   arithmetic of :class:`~timm_recipes.data.transforms.ToTensorNormalize` (``x · 1/(255·std) − mean/std`` in
   float32), so the result equals what the CPU pipeline would have produced, bit for bit;
3. applies the batch transform (Mixup/CutMix in place, :class:`~timm_recipes.data.mixing.MixupCutmix`) with the
   targets still on the host, so validating them costs no device synchronisation;
4. makes the consumer's stream wait for the side stream before the batch is handed out.

Nothing here depends on CUDA: on a CPU device the same steps run in order (no stream), which is how the tests
check the normalisation, the mixing and the batch order exactly against the CPU pipeline.

:func:`uint8_dataset` gives a copy of a dataset whose pipeline stops before normalising (the ``normalize=False``
of the pipeline builders) and returns the pipeline's mean and std for step 2.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["DevicePrefetcher", "uint8_dataset"]

BatchTransform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _normalizers(transform: Any) -> list[Any]:
    from timm_recipes.data.transforms import ToTensorNormalize

    found = []
    for t in getattr(transform, "transforms", [transform]):
        if isinstance(t, ToTensorNormalize):
            found.append(t)
        elif hasattr(t, "transforms"):
            found.extend(_normalizers(t))
    return found


def _replace_transform(dataset: Any, transform: Any) -> Any:
    """A shallow copy of ``dataset`` (and of wrappers such as ``Subset`` down to the holder) with ``transform``."""
    out = copy.copy(dataset)
    if getattr(dataset, "transform", None) is None and hasattr(dataset, "dataset"):
        out.dataset = _replace_transform(dataset.dataset, transform)
    else:
        out.transform = transform
    return out


def uint8_dataset(dataset: Any) -> tuple[Any, tuple[float, ...] | None, tuple[float, ...] | None]:
    """``(copy of dataset emitting uint8, mean, std)``: its pipeline with every ``ToTensorNormalize`` switched to
    ``normalize=False``. A dataset whose pipeline does not normalise (or has none) is returned as it is, with
    ``(None, None)``; the original dataset and pipeline are never modified.
    """
    from timm_recipes.data.datasets import _find_transform

    transform = _find_transform(dataset)
    norms = [t for t in _normalizers(transform) if t.normalize] if transform is not None else []
    if not norms:
        return dataset, None, None
    if len({(t.mean, t.std) for t in norms}) != 1:
        raise ValueError("the pipeline normalises with more than one mean/std: cannot move normalisation to the GPU")
    mean, std = norms[0].mean, norms[0].std
    transform = copy.deepcopy(transform)
    for t in _normalizers(transform):
        t.normalize = False
    return _replace_transform(dataset, transform), mean, std


class DevicePrefetcher:
    """Wrap a loader of ``(images, targets)`` batches: the next batch is copied to ``device``, normalised, mixed
    and laid out while the current one is consumed (on CUDA on a side stream; elsewhere in order).

    Args:
        loader: yields ``(uint8 or float images N×C×H×W, targets)``; with ``pin_memory=True`` on CUDA.
        device: where the batches go.
        mean: per-channel mean ([0, 1] units) to normalise uint8 images with; None: images pass unchanged (a uint8
            batch then stays uint8).
        std: per-channel standard deviation, > 0, with ``mean``.
        channels_last: hand out channels-last images.
        batch_transform: e.g. a ``MixupCutmix`` with ``inplace=True``, called as
            ``batch_transform(images on the device, targets as loaded)``; returns ``(images, targets)``.

    Other attributes (``set_epoch``, ``epoch``, ``sampler``, ``batch_size``, ``epoch_corrupt_files``…) are the
    wrapped loader's.
    """

    applies_batch_transform = True

    def __init__(
        self,
        loader: Any,
        device: torch.device | str,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        channels_last: bool = False,
        batch_transform: BatchTransform | None = None,
    ) -> None:
        self.loader = loader
        self.device = torch.device(device)
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together (or neither)")
        self.channels_last = bool(channels_last)
        self.batch_transform = batch_transform
        self._scale = self._shift = None
        if mean is not None and std is not None:
            mean64, std64 = np.asarray(mean, np.float64), np.asarray(std, np.float64)
            if mean64.shape != (3,) or std64.shape != (3,) or not np.isfinite(mean64).all():
                raise ValueError(f"mean and std must be 3 finite numbers each, got {mean!r} and {std!r}")
            if not (np.isfinite(std64).all() and (std64 > 0).all()):
                raise ValueError(f"std must be finite and > 0 per channel, got {std!r}")
            # ToTensorNormalize's constants, computed the same way: x * scale - shift in float32.
            std255 = std64 * 255.0
            scale = (1.0 / std255).astype(np.float32).reshape(1, 3, 1, 1)
            shift = (mean64 * 255.0 / std255).astype(np.float32).reshape(1, 3, 1, 1)
            self._scale = torch.from_numpy(scale).to(self.device)
            self._shift = torch.from_numpy(shift).to(self.device)
        self._stream: Any = None

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def _prepare(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Steps 1-3 for one batch (on the current stream)."""
        images = images.to(self.device, non_blocking=True)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if self._scale is not None and images.dtype == torch.uint8:
            out = torch.empty_like(images, dtype=torch.float32, memory_format=fmt)
            out.copy_(images)  # one kernel: to float32 (and to channels-last)
            images = out.mul_(self._scale).sub_(self._shift)
        elif self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.batch_transform is not None:
            images, targets = self.batch_transform(images, targets)  # targets as loaded: checked on the host
        return images, targets.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        cuda = self.device.type == "cuda"
        if cuda and self._stream is None:  # one stream for the loader's lifetime (the allocator pools per stream)
            self._stream = torch.cuda.Stream(device=self.device)
        consumer = torch.cuda.current_stream(self.device) if cuda else None
        pending: tuple[Tensor, Tensor] | None = None
        for images, targets in self.loader:
            if consumer is not None:
                # Blocks the consumer released may be reused below: wait for its queued work before writing them.
                self._stream.wait_stream(consumer)
            with torch.cuda.stream(self._stream) if cuda else contextlib.nullcontext():
                ready = self._prepare(images, targets)
            if pending is not None:
                yield pending
            if consumer is not None:
                consumer = torch.cuda.current_stream(self.device)
                consumer.wait_stream(self._stream)
            pending = ready
        if pending is not None:
            yield pending

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.loader!r}, device={self.device}, channels_last={self.channels_last})"
