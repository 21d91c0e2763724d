"""Batch-level Mixup and CutMix: the random draws, pure batch functions, a batch transform and a collator.

Mixup (Zhang et al., https://arxiv.org/abs/1710.09412) and CutMix (Yun et al., https://arxiv.org/abs/1905.04899)
as the lecture defines them, with the argument names of ``timm.data.Mixup``:

- Mixup: λ ~ Beta(α, α); x = λ x_i + (1 − λ) x_j; y = λ e(y_i) + (1 − λ) e(y_j).
- CutMix: λ ~ Beta(α, α); a box of height H·√(1 − λ) and width W·√(1 − λ) (rounded half up to whole pixels),
  centred on a pixel drawn uniformly over the image, clipped at the border, filled from the partner image; λ is then
  set to the fraction of pixels actually kept, so the label weights equal the pixel fractions exactly.
- e(y) is the lecture's label-smoothing encoding: ε / C for every other class, 1 − ε (C − 1) / C for the true one.

Everything random for one batch is drawn in one place (:meth:`MixupCutmix.sample_params`) into a :class:`MixParams`;
applying it is deterministic, so a caller (or a test) can pass the draws in and rebuild the batch exactly.

Partners follow timm: element ``i`` is mixed with ``N − 1 − i`` (the flipped batch) in every mode. A shuffled loader
makes this a random pairing. With an odd batch the middle element is its own partner and stays unmixed.

Arithmetic: pixels are blended with ``torch.lerp`` in the images' float dtype (float32 for uint8, float16 and
bfloat16); uint8 results are rounded to the nearest integer (an exact tie, x.5, may go either way in float32). A
mixed label row is ε / C everywhere except at the two classes, whose values ``λ on + (1 − λ) off`` and
``λ off + (1 − λ) on`` are computed in float64 and rounded once to float32 (a CutMix label weight is the kept pixel
fraction rounded once).

Why not just ``timm.data.Mixup``: it asserts an even batch, materialises a flipped copy of the whole batch (or a
clone of it in ``pair``/``elem`` mode), cannot take its draws from an explicit generator or from the caller, and fails
on uint8 batches (only its collator handles them). Here, because the flip pairing is an involution, the pairs (i, j)
are mixed from their two originals, ``x_i' = λ x_i + (1 − λ) x_j`` and ``x_j' = λ x_j + (1 − λ) x_i``, a few pairs at
a time on the CPU (the temporaries stay in cache); on a GPU, where a launch costs more than the work, a call is a
fixed handful of whole-batch operations (batch mode: 6 on the device, labels included). CutMix copies only the boxes.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.utils.data
from torch import Tensor

__all__ = ["MixParams", "MixupCutmix", "MixupCutmixCollator", "cutmix_batch", "mixup_batch", "smooth_one_hot"]

MODES = ("batch", "pair", "elem")
CHANNELS = (1, 3)
# On these devices the flip pairing is mixed a few pairs at a time, so that the temporaries (the reversed partner rows)
# stay in cache; elsewhere (GPUs), where a launch costs more than the work, in two half-batch operations.
CHUNKED_DEVICES = ("cpu",)
CHUNK_BYTES = 4 << 20


# ----------------------------------------------------------------------------------------------------------------------
# Label encoding
# ----------------------------------------------------------------------------------------------------------------------
def smooth_one_hot(
    targets: Tensor,
    num_classes: int,
    smoothing: float = 0.0,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The lecture's label-smoothing encoding LS(y, ε) of integer targets, ``N × num_classes``.

    Every other class gets ``ε / C``, the true class ``1 − ε (C − 1) / C`` (both computed in float64, then cast
    once). With ``smoothing=0`` this is the one-hot encoding.

    Args:
        targets: Integer class indices, shape ``(N,)``, in ``[0, num_classes)``.
        num_classes: Number of classes C (>= 2).
        smoothing: ε in ``[0, 1)``.
        dtype: Floating dtype of the result.
        device: Device of the result (default: the device of ``targets``).
    """
    num_classes = _check_num_classes(num_classes)
    smoothing = _check_unit("label_smoothing", smoothing, upper_open=True)
    targets = _check_targets(targets, None, num_classes)
    return _encode(targets, num_classes, smoothing, dtype, targets.device if device is None else device)


def _encode(
    targets: Tensor, num_classes: int, smoothing: float, dtype: torch.dtype, device: torch.device | str
) -> Tensor:
    off = smoothing / num_classes
    on = 1.0 - smoothing * (num_classes - 1) / num_classes
    out = torch.full((targets.shape[0], num_classes), off, dtype=dtype, device=device)
    return out.scatter_(1, _to_device(targets, torch.device(device)).view(-1, 1), on)


# ----------------------------------------------------------------------------------------------------------------------
# The draws
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MixParams:
    """Everything random about mixing one batch of ``N`` images, one entry per element (CPU tensors).

    Element ``i`` keeps the weight ``lam[i]`` of its own pixels and label and takes ``1 − lam[i]`` from element
    ``partner[i]``. A Mixup element (``use_cutmix[i]`` false, ``lam[i] < 1``) is blended; a CutMix element takes the
    box ``box[i] = (y0, y1, x0, x1)`` (rows ``y0:y1``, columns ``x0:x1``) from its partner and ``lam[i]`` must equal
    the kept fraction ``1 − (y1 − y0)(x1 − x0) / (H W)``; an element with ``lam[i] == 1`` and no CutMix is unmixed.

    Attributes:
        lam: float64 ``(N,)`` in ``[0, 1]``: weight of the element's own image and label.
        use_cutmix: bool ``(N,)``.
        box: int64 ``(N, 4)``: CutMix boxes ``(y0, y1, x0, x1)`` after clipping (ignored where ``use_cutmix`` is false).
        partner: int64 ``(N,)``: the partner index ``j`` of each element.
        lam_drawn: float64 ``(N,)`` or None: the Beta draw before the CutMix correction (a record, not used to mix).
        center: int64 ``(N, 2)`` or None: the CutMix box centre ``(cy, cx)`` before clipping (a record).
    """

    lam: Tensor
    use_cutmix: Tensor
    box: Tensor
    partner: Tensor
    lam_drawn: Tensor | None = None
    center: Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("lam", "use_cutmix", "box", "partner"):
            if not isinstance(getattr(self, name), Tensor):
                raise TypeError(f"MixParams.{name} must be a torch.Tensor, got {type(getattr(self, name)).__name__}")
        n = self.lam.shape[0] if self.lam.ndim == 1 else -1
        expected = {"lam": (n,), "use_cutmix": (n,), "box": (n, 4), "partner": (n,)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(
                    f"MixParams.{name} must have shape {shape} (N = len(lam)), got {tuple(getattr(self, name).shape)}"
                )
        if self.use_cutmix.dtype != torch.bool:
            raise TypeError(f"MixParams.use_cutmix must be a bool tensor, got {self.use_cutmix.dtype}")
        for name in ("box", "partner"):
            if getattr(self, name).dtype != torch.int64:
                raise TypeError(f"MixParams.{name} must be an int64 tensor, got {getattr(self, name).dtype}")
        if not self.lam.is_floating_point():
            raise TypeError(f"MixParams.lam must be a floating tensor, got {self.lam.dtype}")
        if n and not bool(((self.lam >= 0) & (self.lam <= 1)).all()):
            raise ValueError("MixParams.lam must lie in [0, 1]")
        if n and not bool(((self.partner >= 0) & (self.partner < n)).all()):
            raise ValueError(f"MixParams.partner must hold indices in [0, {n})")

    @property
    def batch_size(self) -> int:
        return int(self.lam.shape[0])

    @classmethod
    def _trusted(cls, **fields: Tensor | None) -> MixParams:
        """Construct without the checks (for draws this module has just made consistent by construction)."""
        params = object.__new__(cls)
        for name in ("lam", "use_cutmix", "box", "partner", "lam_drawn", "center"):
            object.__setattr__(params, name, fields.get(name))
        return params

    @classmethod
    def for_batch(
        cls,
        batch_size: int,
        *,
        lam: float = 1.0,
        box: tuple[int, int, int, int] | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> MixParams:
        """Batch-mode draws written by hand: every element mixed with its flip partner ``N − 1 − i``.

        Without ``box`` this is Mixup with weight ``lam``; with ``box = (y0, y1, x0, x1)`` (and the image
        ``height``/``width``) it is CutMix with λ set to the kept fraction (``lam`` is then ignored). The middle
        element of an odd batch is its own partner and stays unmixed.
        """
        n = _check_int("batch_size", batch_size, 0)
        partner = torch.arange(n - 1, -1, -1)
        paired = partner != torch.arange(n)
        boxes = torch.zeros(n, 4, dtype=torch.int64)
        if box is None:
            lam = _check_unit("lam", lam)
            lam_t = torch.where(paired, lam, 1.0).double()
            return cls(lam=lam_t, use_cutmix=torch.zeros(n, dtype=torch.bool), box=boxes, partner=partner)
        if height is None or width is None:
            raise ValueError("height and width are required with a CutMix box")
        y0, y1, x0, x1 = (int(v) for v in box)
        if not (0 <= y0 <= y1 <= height and 0 <= x0 <= x1 <= width):
            raise ValueError(f"box must satisfy 0 <= y0 <= y1 <= height and 0 <= x0 <= x1 <= width, got {box}")
        boxes[paired] = torch.tensor([y0, y1, x0, x1])
        lam_t = torch.where(paired, _kept_fraction(boxes, height, width), 1.0).double()
        return cls(lam=lam_t, use_cutmix=paired.clone(), box=boxes, partner=partner)

    def check(self, batch_size: int, height: int, width: int) -> None:
        """Raise ``ValueError`` unless these draws fit a batch of ``batch_size`` images of ``height × width``."""
        if self.batch_size != batch_size:
            raise ValueError(f"params were drawn for a batch of {self.batch_size}, images have {batch_size}")
        if not bool(self.use_cutmix.any()):
            return
        b = self.box[self.use_cutmix]
        y0, y1, x0, x1 = b.unbind(1)
        if not bool(((y0 >= 0) & (y0 <= y1) & (y1 <= height) & (x0 >= 0) & (x0 <= x1) & (x1 <= width)).all()):
            raise ValueError(f"params.box must lie inside the {height}×{width} image with y0 <= y1 and x0 <= x1")
        kept = _kept_fraction(b, height, width)
        if not torch.equal(kept, self.lam[self.use_cutmix].double()):
            raise ValueError("params.lam of a CutMix element must equal its kept pixel fraction 1 - box area / (H W)")


def _beta(x: float, y: float) -> float:
    """``X / (X + Y)`` for ``X, Y ~ Gamma(α)``: a Beta(α, α) draw. Both can underflow to 0 only for a tiny α (each
    with probability about ``1e-308^α``); λ is then the distribution's centre, 0.5."""
    total = x + y
    return x / total if total > 0 else 0.5


def _draw_units(concentration: Tensor, g: torch.Generator | None, units: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Everything random about ``units`` draws in one call to the generator: Gamma variates of ``concentration``
    (see :meth:`MixupCutmix._concentration`), as four rows of uniforms in ``[0, 1)`` (from Exp(1) = Gamma(1)
    variates E, ``U = 1 − e^−E``) and one Beta(α, α) row per pair of equal shapes after them (see :func:`_beta`)."""
    gammas = torch._standard_gamma(concentration[:, None].repeat(1, units), generator=g).numpy()
    uniforms = -np.expm1(-gammas[:4])
    x, y = gammas[4::2], gammas[5::2]
    total = x + y
    return uniforms, list(np.where(total > 0, x / np.where(total > 0, total, 1.0), 0.5))


def _below(u: np.ndarray, size: int) -> np.ndarray:
    """Uniform integers in ``[0, size)`` from uniforms in ``[0, 1)``."""
    return np.minimum((u * size).astype(np.int64), size - 1)


def _kept_fraction(box: Tensor, height: int, width: int) -> Tensor:
    """``(H W − box area) / (H W)`` as float64: the exact kept fraction, rounded once."""
    area = (box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])
    total = height * width
    return (total - area).double() / total


# ----------------------------------------------------------------------------------------------------------------------
# Pure batch functions
# ----------------------------------------------------------------------------------------------------------------------
def mixup_batch(
    images: Tensor,
    targets_soft: Tensor,
    lam: float | Tensor,
    partner_index: Tensor,
    *,
    inplace: bool = False,
) -> tuple[Tensor, Tensor]:
    """Mixup of a batch with given draws: ``x_i' = λ_i x_i + (1 − λ_i) x_{p(i)}``, same for the soft targets.

    Args:
        images: ``N × C × H × W``, uint8 (rounded to the nearest integer) or floating.
        targets_soft: ``N × K`` soft (e.g. :func:`smooth_one_hot`) targets.
        lam: λ for the whole batch, or one per element ``(N,)``.
        partner_index: int64 ``(N,)``; any permutation (torchvision's ``roll``, a random one). The flip
            ``N − 1 − i`` (timm's pairing) is mixed pair by pair without a copy of the batch; others need one copy.
        inplace: Write into ``images`` instead of a new tensor.

    Returns:
        The mixed images and the mixed targets (a new tensor).
    """
    n = _check_images(images)[0]
    lam_t = _as_lam(lam, n)
    params = MixParams(
        lam=lam_t,
        use_cutmix=torch.zeros(n, dtype=torch.bool),
        box=torch.zeros(n, 4, dtype=torch.int64),
        partner=_as_index(partner_index, n),
    )
    plan = _Plan.of(params)
    return _mix_images(images, params, inplace, plan), _mix_targets(targets_soft, params, plan)


def cutmix_batch(
    images: Tensor,
    targets_soft: Tensor,
    box: tuple[int, int, int, int] | Tensor,
    partner_index: Tensor,
    *,
    inplace: bool = False,
) -> tuple[Tensor, Tensor]:
    """CutMix of a batch with given boxes: element ``i`` takes ``box`` from element ``partner_index[i]``.

    The label weight of each element is its kept pixel fraction ``1 − box area / (H W)``, exactly.

    Args:
        images: ``N × C × H × W``, uint8 or floating.
        targets_soft: ``N × K`` soft targets.
        box: ``(y0, y1, x0, x1)`` for the whole batch, or an int64 ``N × 4`` tensor of per-element boxes.
        partner_index: int64 ``(N,)`` permutation (see :func:`mixup_batch`).
        inplace: Write into ``images`` instead of a new tensor.

    Returns:
        The mixed images and the mixed targets.
    """
    n, _, h, w = _check_images(images)
    boxes = torch.as_tensor(box, dtype=torch.int64).cpu()
    boxes = boxes.expand(n, 4).clone() if boxes.ndim == 1 else boxes
    if tuple(boxes.shape) != (n, 4):
        raise ValueError(f"box must be (y0, y1, x0, x1) or an N x 4 tensor, got shape {tuple(boxes.shape)}")
    use = torch.ones(n, dtype=torch.bool)
    y0, y1, x0, x1 = boxes.unbind(1)
    if not bool(((y0 >= 0) & (y0 <= y1) & (y1 <= h) & (x0 >= 0) & (x0 <= x1) & (x1 <= w)).all()):
        raise ValueError(f"box must lie inside the {h}×{w} image with y0 <= y1 and x0 <= x1")
    params = MixParams(lam=_kept_fraction(boxes, h, w), use_cutmix=use, box=boxes, partner=_as_index(partner_index, n))
    plan = _Plan.of(params)
    return _mix_images(images, params, inplace, plan), _mix_targets(targets_soft, params, plan)


def _mix_targets(targets_soft: Tensor, params: MixParams | None, plan: _Plan | None = None) -> Tensor:
    """``y_i' = λ_i y_i + (1 − λ_i) y_{p(i)}`` with λ and 1 − λ computed in float64, then cast."""
    if not isinstance(targets_soft, Tensor) or not targets_soft.is_floating_point() or targets_soft.ndim != 2:
        raise TypeError("targets_soft must be a floating N x K tensor of soft targets")
    plan = _Plan.of(params) if plan is None else plan  # type: ignore[arg-type]
    if targets_soft.shape[0] != len(plan.lam):
        raise ValueError(f"targets_soft has {targets_soft.shape[0]} rows, images have {len(plan.lam)}")
    dev, dt = targets_soft.device, targets_soft.dtype
    partners = targets_soft.flip(0) if plan.flip else targets_soft[_to_device(torch.from_numpy(plan.partner), dev)]
    if plan.lam_scalar is not None:  # one λ for the batch: plain scalars, nothing to send to the device
        lam = plan.lam_scalar
        mixed = targets_soft * lam + partners * (1.0 - lam)
        for i in plan.selfs:  # its own partner: unmixed, exactly (the middle of an odd flipped batch)
            mixed[i] = targets_soft[i]
        return mixed
    weights = torch.from_numpy(np.stack([plan.lam, 1.0 - plan.lam], 1)).to(dt)  # float64, cast once
    weights = _to_device(weights, dev)  # one small transfer for both weights
    return targets_soft * weights[:, :1] + partners * weights[:, 1:]


def _mixed_labels(labels: np.ndarray, num_classes: int, smoothing: float, plan: _Plan, device: torch.device) -> Tensor:
    """``y_i' = λ_i e(y_i) + (1 − λ_i) e(y_{p(i)})`` as float32 ``N × num_classes`` on ``device``, in two operations.

    Every entry of a row is ``ε / C`` except at ``y_i`` and ``y_{p(i)}``, so the row is a fill and a scatter of
    two values per row. Those values are computed on the host from the float64 formula (``λ on + (1 − λ) off`` and
    ``λ off + (1 − λ) on``; ``on`` when both labels are the same class, as for an element that is its own partner)
    and rounded once to float32 (no float32 arithmetic in between). The host work is a
    few NumPy operations on N numbers, and the device sees one fill, two small copies and one scatter whatever the
    mode (instead of two encodings, a reversal and three full-size arithmetic passes).
    """
    n = len(labels)
    off = smoothing / num_classes
    on = 1.0 - smoothing * (num_classes - 1) / num_classes
    out = torch.full((n, num_classes), off, dtype=torch.float32, device=device)
    if not n:
        return out
    other = labels[::-1] if plan.flip else labels[plan.partner]
    index = np.empty((n, 2), dtype=np.int64)
    index[:, 0], index[:, 1] = labels, other
    values = np.empty((n, 2), dtype=np.float32)
    lam = plan.lam_scalar
    if lam is not None:  # one λ (batch mode): two Python numbers
        values[:] = (lam * on + (1.0 - lam) * off, lam * off + (1.0 - lam) * on)
    else:
        values[:, 0], values[:, 1] = plan.lam * on + (1.0 - plan.lam) * off, plan.lam * off + (1.0 - plan.lam) * on
    values[labels == other] = on
    return out.scatter_(1, _to_device(torch.from_numpy(index), device), _to_device(torch.from_numpy(values), device))


def _to_device(t: Tensor, device: torch.device) -> Tensor:
    """A small host tensor to ``device`` without stalling the stream.

    ``non_blocking`` from pageable memory: CUDA stages a host-to-device copy immediately and returns without
    waiting for the device, so nothing is pinned per call (pinning costs more than these few hundred bytes).
    """
    if t.device == device:
        return t
    return t.to(device, non_blocking=True)


# ----------------------------------------------------------------------------------------------------------------------
# Applying draws to pixels
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    """The draws of one batch as NumPy arrays and the shortcuts they allow, computed once per call.

    Attributes:
        lam: float64 ``(N,)``, the label weight of each element's own target.
        partner: int64 ``(N,)``.
        weight: float64 ``(N,)``: ``1 − λ_i`` for Mixup elements with a partner, 0 elsewhere.
        cut: bool ``(N,)``: elements that take a non-empty box from their partner.
        boxes: int64 ``(N, 4)``, zero where ``cut`` is false.
        flip: the partners are the flipped batch ``N − 1 − i``.
        selfs: elements that are their own partner (kept exactly).
        lam_scalar: the one λ of all paired elements (None if they differ).
        weight_scalar: the one Mixup weight when every paired element is either blended with it or cut.
        same_box: the one box of a flipped batch in which every paired element is cut (batch-mode CutMix).
    """

    lam: np.ndarray
    partner: np.ndarray
    weight: np.ndarray
    cut: np.ndarray
    boxes: np.ndarray
    flip: bool
    selfs: list[int]
    lam_scalar: float | None
    weight_scalar: float | None
    same_box: tuple[int, int, int, int] | None
    active: bool
    any_cut: bool

    @classmethod
    def of(cls, params: MixParams) -> _Plan:
        return cls.build(
            params.lam.double().numpy(), params.use_cutmix.numpy(), params.box.numpy(), params.partner.numpy()
        )

    @classmethod
    def build(cls, lam: np.ndarray, use_cutmix: np.ndarray, box: np.ndarray, partner: np.ndarray) -> _Plan:
        n = len(lam)
        index = np.arange(n)
        paired = partner != index
        nonempty = (box[:, 1] > box[:, 0]) & (box[:, 3] > box[:, 2])
        cut = use_cutmix & paired & nonempty
        mix = ~use_cutmix & paired & (lam < 1)
        weight = np.where(mix, 1.0 - lam, 0.0)
        paired_lam = lam[paired]
        lam_scalar = None
        if not paired_lam.size:
            lam_scalar = 1.0
        elif (paired_lam == paired_lam[0]).all():
            lam_scalar = float(paired_lam[0])
        weight_scalar = None
        if mix.any():
            w = weight[mix]
            if (w == w[0]).all() and (mix | cut | ~paired).all():
                weight_scalar = float(w[0])
        flip = bool((partner == index[::-1]).all())  # (an empty batch counts as flipped)
        same_box = None
        if flip and paired.any() and cut[paired].all():
            b = box[paired]
            if (b == b[0]).all():
                same_box = tuple(int(v) for v in b[0])
        any_cut = bool(cut.any())
        return cls(
            lam=lam, partner=partner, weight=weight, cut=cut, boxes=np.where(cut[:, None], box, 0), flip=flip,
            selfs=np.flatnonzero(~paired).tolist(), lam_scalar=lam_scalar, weight_scalar=weight_scalar,
            same_box=same_box, active=any_cut or bool(mix.any()), any_cut=any_cut,
        )  # fmt: skip

    @classmethod
    def for_batch(cls, n: int, lam: float, use_cut: bool, box: tuple[int, int, int, int]) -> _Plan:
        """What :meth:`build` gives for batch-mode draws (one λ, one box, flip partners), from the scalars."""
        return _BatchPlan(n, lam, use_cut, box)


class _BatchPlan(_Plan):
    """A batch-mode plan: the shortcuts from the scalars at once, the per-element arrays only when something reads
    them. Batch mode never does on any device (``lam_scalar``, ``weight_scalar`` and ``same_box`` cover it), so a
    call does not pay for building them."""

    def __init__(self, n: int, lam: float, use_cut: bool, box: tuple[int, int, int, int]) -> None:  # no super()
        has_pair = n >= 2
        cut_any = use_cut and has_pair and box[1] > box[0] and box[3] > box[2]
        mix_any = not use_cut and has_pair and lam < 1
        self._draws = (n, lam, box, cut_any, mix_any)
        self.flip, self.selfs = True, [n // 2] if n % 2 else []
        self.lam_scalar = lam if has_pair else 1.0
        self.weight_scalar = 1.0 - lam if mix_any else None
        self.same_box = box if cut_any else None
        self.active, self.any_cut = cut_any or mix_any, cut_any

    @functools.cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n, lam, box, cut_any, mix_any = self._draws
        partner, _, paired = _layout(n, "batch")
        zeros_f, zeros_b, zeros_box = _constants(n)
        lam_e = np.full(n, lam)
        weight = np.full(n, 1.0 - lam) if mix_any else zeros_f
        if n % 2:
            lam_e[n // 2] = 1.0
            if mix_any:
                weight[n // 2] = 0.0
        boxes = np.where(paired[:, None], np.asarray(box, dtype=np.int64), 0) if cut_any else zeros_box
        return lam_e, partner, weight, paired if cut_any else zeros_b, boxes

    lam = property(lambda self: self._arrays[0])  # type: ignore[assignment]
    partner = property(lambda self: self._arrays[1])  # type: ignore[assignment]
    weight = property(lambda self: self._arrays[2])  # type: ignore[assignment]
    cut = property(lambda self: self._arrays[3])  # type: ignore[assignment]
    boxes = property(lambda self: self._arrays[4])  # type: ignore[assignment]


@functools.lru_cache(maxsize=64)
def _constants(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read-only zeros of the shapes a plan holds: float64 (N,), bool (N,), int64 (N, 4)."""
    arrays = (np.zeros(n), np.zeros(n, dtype=bool), np.zeros((n, 4), dtype=np.int64))
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _mix_images(images: Tensor, params: MixParams | None, inplace: bool, plan: _Plan | None = None) -> Tensor:
    """Apply ``params`` to ``images``; into ``images`` itself when ``inplace``, else into a new tensor."""
    n = images.shape[0]
    plan = _Plan.of(params) if plan is None else plan  # type: ignore[arg-type]
    if not plan.active:
        return images if inplace else images.clone()
    dst = images
    if not inplace:
        if plan.any_cut:  # CutMix writes only box regions: mix inside a copy
            images = dst = images.clone()
        else:  # pure Mixup writes every pixel of a new tensor from the untouched originals
            dst = torch.empty_like(images)
    if images.device.type not in CHUNKED_DEVICES:  # GPUs: a fixed, small number of whole-batch operations
        _mix_whole(images, dst, plan)
    elif plan.flip:  # timm's pairing: mix each pair (i, N - 1 - i) from its two originals, a few pairs at a time
        _mix_flip(images, dst, plan)
    else:  # any other permutation: one copy of the partners
        partners = images[torch.from_numpy(plan.partner)]
        _mix_block(images, partners, dst, plan, 0, n, dst is images)
    return dst


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _blend(x: Tensor, y: Tensor, weight: float | Tensor, out: Tensor) -> None:
    """``out = x + weight (y − x)`` (= λ x + (1 − λ) y with weight = 1 − λ), in float32 for uint8, then rounded."""
    cd = _compute_dtype(x.dtype)
    if x.dtype == cd:
        torch.lerp(x, y, weight, out=out)
        return
    mixed = torch.lerp(x.to(cd), y.to(cd), weight)
    out.copy_(mixed if out.is_floating_point() else mixed.round_())


def _swap_box(src: Tensor, dst: Tensor, box: tuple[int, int, int, int], i0: int, i1: int) -> None:
    """Batch CutMix of the pairs ``i0:i1`` (top rows) with ``N − i1:N − i0``: swap the box regions only."""
    n = src.shape[0]
    j0, j1 = n - i1, n - i0
    y0, y1, x0, x1 = box
    top, bottom = src[i0:i1, :, y0:y1, x0:x1], src[j0:j1, :, y0:y1, x0:x1]
    from_bottom, from_top = bottom.flip(0), top.flip(0)
    dst[i0:i1, :, y0:y1, x0:x1] = from_bottom
    dst[j0:j1, :, y0:y1, x0:x1] = from_top


def _mix_whole(src: Tensor, dst: Tensor, plan: _Plan) -> None:
    """The whole batch in a constant number of operations, whatever N: for devices where a launch costs more than
    the work. Batch CutMix replaces the box region by its reversal (2 operations); otherwise one copy of the
    partners, one blend (a scalar weight, or one transfer of N weights) and, for per-element boxes, one masked select
    over the batch whose mask is built on the device from one transfer of the N × 4 boxes (no Python loop)."""
    if plan.same_box is not None:  # dst is src here (CutMix mixes in place or inside a copy)
        y0, y1, x0, x1 = plan.same_box
        region = dst[:, :, y0:y1, x0:x1]
        region.copy_(region.flip(0))  # the flip is a new tensor: every box takes its partner's original pixels
        return
    dev = src.device
    partners = src.flip(0) if plan.flip else src[_to_device(torch.from_numpy(plan.partner), dev)]
    if plan.weight_scalar is not None and not plan.any_cut:  # with cut elements their weight is 0, not the scalar
        _blend(src, partners, plan.weight_scalar, dst)
        for i in plan.selfs:  # blended with itself: exact already for finite pixels; restore it for any value
            dst[i].copy_(partners[plan.partner[i]])
    elif plan.weight.any():
        w = torch.from_numpy(plan.weight).to(_compute_dtype(src.dtype)).view(-1, 1, 1, 1)
        _blend(src, partners, _to_device(w, dev), dst)
    elif dst is not src:
        dst.copy_(src)
    if plan.any_cut:
        h, w_ = src.shape[-2:]
        box = _to_device(torch.from_numpy(plan.boxes), dev)
        rows, cols = torch.arange(h, device=dev), torch.arange(w_, device=dev)
        in_rows = (rows >= box[:, 0:1]) & (rows < box[:, 1:2])
        in_cols = (cols >= box[:, 2:3]) & (cols < box[:, 3:4])
        mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
        torch.where(mask, partners, dst, out=dst)


def _mix_flip(src: Tensor, dst: Tensor, plan: _Plan) -> None:
    """The flip partner, a chunk of pairs at a time: top rows ``i0:i1`` with bottom rows ``N − i1:N − i0`` reversed."""
    n, c = src.shape[:2]
    h = n // 2
    inplace = dst is src
    if n % 2 and not inplace:
        dst[h].copy_(src[h])
    same_box = plan.same_box
    if same_box is not None:
        row_bytes = c * (same_box[1] - same_box[0]) * (same_box[3] - same_box[2]) * src.element_size()
    else:
        row_bytes = src[0].numel() * max(src.element_size(), 4)  # uint8 is mixed in float32
    chunk = max(1, CHUNK_BYTES // row_bytes)
    for i0 in range(0, h, chunk):
        i1 = min(h, i0 + chunk)
        j0, j1 = n - i1, n - i0
        if same_box is not None:  # batch CutMix: swap the box regions only (dst is src here)
            _swap_box(src, dst, same_box, i0, i1)
            continue
        originals_bottom = src[j0:j1].flip(0)  # aligned with the top rows: the partner of row i is N − 1 − i
        originals_top = src[i0:i1].flip(0)
        _mix_block(src[i0:i1], originals_bottom, dst[i0:i1], plan, i0, i1, inplace)
        _mix_block(src[j0:j1], originals_top, dst[j0:j1], plan, j0, j1, inplace)


def _mix_block(x: Tensor, y: Tensor, out: Tensor, plan: _Plan, start: int, stop: int, inplace: bool) -> None:
    """Elements ``start:stop``: ``x`` their originals, ``y`` their partners' originals (aligned), into ``out``."""
    if plan.weight_scalar is not None and not plan.any_cut:  # batch Mixup (the middle of an odd N is never here)
        _blend(x, y, plan.weight_scalar, out)
        return
    weights = plan.weight[start:stop]
    if weights.any():
        if (weights == weights[0]).all():  # one λ for the block: a scalar weight, nothing to transfer
            _blend(x, y, float(weights[0]), out)
        else:
            w = torch.from_numpy(weights).to(_compute_dtype(x.dtype)).view(-1, 1, 1, 1)
            _blend(x, y, _to_device(w, x.device), out)
    elif not inplace:
        out.copy_(x)
    for t in np.flatnonzero(plan.cut[start:stop]).tolist():  # CPU: each box copy is one cheap slice assignment
        y0, y1, x0, x1 = plan.boxes[start + t].tolist()
        out[t, :, y0:y1, x0:x1] = y[t, :, y0:y1, x0:x1]


# ----------------------------------------------------------------------------------------------------------------------
# The batch transform and the collator
# ----------------------------------------------------------------------------------------------------------------------
class MixupCutmix:
    """Mixup / CutMix of a batch as one transform, with ``timm.data.Mixup``'s argument names.

    Papers: mixup (https://arxiv.org/abs/1710.09412), CutMix (https://arxiv.org/abs/1905.04899).

    Args:
        num_classes: Number of classes C (>= 2).
        mixup_alpha: α of Mixup's Beta(α, α); 0 disables Mixup.
        cutmix_alpha: α of CutMix's Beta(α, α); 0 disables CutMix.
        prob: Probability of mixing at all, per batch, pair or element (see ``mode``).
        switch_prob: With both alphas > 0, probability of CutMix instead of Mixup.
        mode: ``"batch"`` (one draw for the whole batch), ``"pair"`` (one draw per pair (i, N − 1 − i), both members
            mixed symmetrically with the same λ and box), ``"elem"`` (one draw per element).
        label_smoothing: ε of the label encoding, in ``[0, 1)``; default 0 (smoothing happens only where asked).
        generator: A CPU ``torch.Generator`` for the draws; default: torch's global generator.
        correct_lam: Accepted for timm compatibility; only True (λ corrected to the kept area) is supported.

    With both alphas 0 the transform only encodes the targets. Partners are the flipped batch (as in timm): element
    ``i`` mixes with ``N − 1 − i``; in an odd batch the middle element is its own partner and stays unmixed.
    Setting ``mixup_enabled = False`` (as timm's training scripts do near the end of training) turns mixing off.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        label_smoothing: float = 0.0,
        generator: torch.Generator | None = None,
        *,
        correct_lam: bool = True,
    ) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.mixup_alpha = _check_alpha("mixup_alpha", mixup_alpha)
        self.cutmix_alpha = _check_alpha("cutmix_alpha", cutmix_alpha)
        self.prob = _check_unit("prob", prob)
        self.switch_prob = _check_unit("switch_prob", switch_prob)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.label_smoothing = _check_unit("label_smoothing", label_smoothing, upper_open=True)
        if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
            raise TypeError(f"generator must be a CPU torch.Generator or None, got {generator!r}")
        self.generator = generator
        if correct_lam is not True:
            raise ValueError("correct_lam must be True: label weights always equal the kept pixel fractions")
        self.mixup_enabled = True

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, "
            f"cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, switch_prob={self.switch_prob}, "
            f"mode={self.mode!r}, label_smoothing={self.label_smoothing})"
        )

    def sample_params(
        self, batch_size: int, height: int, width: int, *, generator: torch.Generator | None = None
    ) -> MixParams:
        """Draw everything random for one batch: method, λ, boxes, partners (see :class:`MixParams`).

        Everything is drawn from ``generator`` (else the transform's, else torch's global one) in one call per
        batch: Gamma variates, four of shape 1 turned into uniforms (apply, switch, box centre) and two of shape α per
        method, ``λ = X / (X + Y)`` with ``X, Y ~ Gamma(α)`` (a Beta(α, α) draw); nothing else is random.
        """
        return self._sample(batch_size, height, width, generator)[0]  # type: ignore[return-value]

    def _sample(
        self,
        batch_size: int,
        height: int,
        width: int,
        generator: torch.Generator | None,
        *,
        record: bool = True,
        scalar: bool = True,
    ) -> tuple[MixParams | None, _Plan]:
        """The draws and their plan. ``record=False`` skips building the :class:`MixParams` tensors (``__call__``
        needs only the plan); ``scalar=False`` forces the array path in batch mode (the tests compare the two)."""
        n = _check_int("batch_size", batch_size, 0)
        height, width = _check_int("height", height, 1), _check_int("width", width, 1)
        return self._draw(n, height, width, generator, record, scalar)

    def _draw(
        self, n: int, height: int, width: int, generator: torch.Generator | None, record: bool, scalar: bool = True
    ) -> tuple[MixParams | None, _Plan]:
        """:meth:`_sample` for sizes already checked (the images' own)."""
        g = generator if generator is not None else self.generator
        if self.mode == "batch" and scalar:
            return self._sample_batch(g, n, height, width, record)
        # One draw per unit: the batch, a pair (i, N - 1 - i) or an element.
        units = max(1, {"batch": 1, "pair": n // 2, "elem": n}[self.mode])
        enabled = self.mixup_enabled and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)
        u, betas_ = _draw_units(self._concentration(), g, units)
        apply = (u[0] < self.prob) & enabled
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cut = u[1] < self.switch_prob
        else:
            use_cut = np.full(units, self.cutmix_alpha > 0)
        betas = iter(betas_)
        lam_mix = next(betas) if self.mixup_alpha > 0 else np.ones(units)
        lam_cut = next(betas) if self.cutmix_alpha > 0 else np.ones(units)
        cy, cx = _below(u[2], height), _below(u[3], width)
        use_cut &= apply
        lam_drawn = np.where(apply, np.where(use_cut, lam_cut, lam_mix), 1.0)
        ratio = np.sqrt(1.0 - lam_drawn)  # box side / image side
        cut_h, cut_w = np.floor(height * ratio + 0.5).astype(np.int64), np.floor(width * ratio + 0.5).astype(np.int64)
        top, left = cy - cut_h // 2, cx - cut_w // 2
        box = np.stack([top, top + cut_h, left, left + cut_w], 1)
        box = np.clip(box, 0, [height, height, width, width]) * use_cut[:, None]
        kept = (height * width - (box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])) / (height * width)
        lam = np.where(use_cut, kept, lam_drawn)

        # Spread the units over the elements; an element that is its own partner (odd N) stays unmixed.
        partner, unit, paired = _layout(n, self.mode)
        cut_e = use_cut[unit] & paired
        lam_e, box_e, partner_e = np.where(paired, lam[unit], 1.0), box[unit] * cut_e[:, None], partner.copy()
        params = MixParams._trusted(
            lam=torch.from_numpy(lam_e),
            use_cutmix=torch.from_numpy(cut_e),
            box=torch.from_numpy(box_e),
            partner=torch.from_numpy(partner_e),
            lam_drawn=torch.from_numpy(np.where(paired, lam_drawn[unit], 1.0)),
            center=torch.from_numpy(np.stack([cy, cx], 1)[unit]),
        )
        return params, _Plan.build(lam_e, cut_e, box_e, partner_e)

    def _concentration(self) -> Tensor:
        """The Gamma shapes of one unit's draws, cached: four 1s (Exp(1) variates for the uniforms: apply, switch,
        box row, box column), then ``(α_mixup, α_mixup)`` and/or ``(α_cutmix, α_cutmix)`` (two Gammas per Beta)."""
        key = (self.mixup_alpha, self.cutmix_alpha)
        cached = self.__dict__.get("_conc")
        if cached is None or cached[0] != key:
            alphas = [1.0] * 4 + [a for a in key if a > 0 for _ in range(2)]
            cached = self._conc = (key, torch.tensor(alphas, dtype=torch.float64))
        return cached[1]

    def _sample_batch(
        self, g: torch.Generator | None, n: int, height: int, width: int, record: bool
    ) -> tuple[MixParams | None, _Plan]:
        """Batch mode with Python scalars: the same draws, in the same order, with the same arithmetic as the array
        path with one unit (a few µs instead of dozens of NumPy calls on one-element arrays)."""
        ma, ca = self.mixup_alpha, self.cutmix_alpha
        enabled = self.mixup_enabled and (ma > 0 or ca > 0)
        gammas = torch._standard_gamma(self._concentration(), generator=g).tolist()  # the one call to the generator
        u_apply, u_switch, u_row, u_col = (-math.expm1(-e) for e in gammas[:4])
        apply = u_apply < self.prob and enabled
        use_cut = u_switch < self.switch_prob if ma > 0 and ca > 0 else ca > 0
        lam_mix = lam_cut = 1.0
        if ma > 0 or ca > 0:
            betas = [_beta(gammas[k], gammas[k + 1]) for k in range(4, len(gammas), 2)]
            lam_mix = betas[0] if ma > 0 else 1.0
            lam_cut = betas[-1] if ca > 0 else 1.0
        cy, cx = min(int(u_row * height), height - 1), min(int(u_col * width), width - 1)
        use_cut = use_cut and apply
        lam_drawn = (lam_cut if use_cut else lam_mix) if apply else 1.0
        ratio = math.sqrt(1.0 - lam_drawn)
        cut_h, cut_w = math.floor(height * ratio + 0.5), math.floor(width * ratio + 0.5)
        top, left = cy - cut_h // 2, cx - cut_w // 2
        box = (0, 0, 0, 0)
        if use_cut:
            box = (
                min(max(top, 0), height), min(max(top + cut_h, 0), height),
                min(max(left, 0), width), min(max(left + cut_w, 0), width),
            )  # fmt: skip
        kept = (height * width - (box[1] - box[0]) * (box[3] - box[2])) / (height * width)
        lam = kept if use_cut else lam_drawn
        plan = _Plan.for_batch(n, lam, use_cut, box)
        if not record:
            return None, plan
        partner, _, paired = _layout(n, "batch")
        cut_e = paired & use_cut
        params = MixParams._trusted(
            lam=torch.from_numpy(np.where(paired, lam, 1.0)),
            use_cutmix=torch.from_numpy(cut_e),
            box=torch.from_numpy(np.where(cut_e[:, None], np.asarray(box, dtype=np.int64), 0)),
            partner=torch.from_numpy(partner.copy()),
            lam_drawn=torch.from_numpy(np.where(paired, lam_drawn, 1.0)),
            center=torch.from_numpy(np.tile(np.asarray([cy, cx], dtype=np.int64), (n, 1))),
        )
        return params, plan

    def __call__(
        self, images: Tensor, targets: Tensor, *, inplace: bool = False, params: MixParams | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mix a batch.

        Args:
            images: ``N × C × H × W`` (C in 1 or 3), uint8 or floating, on any device.
            targets: Integer class indices ``(N,)`` in ``[0, num_classes)``. They may stay on the CPU (as the loader
                returns them) with images on a GPU: they are then checked without synchronising the device and
                encoded on the images' device.
            inplace: Mix inside ``images`` (no new image tensor); otherwise ``images`` is left untouched.
            params: Draws to apply instead of sampling new ones (from :meth:`sample_params` or by hand).

        Returns:
            ``(mixed_images, soft_targets)``: soft targets are float32 ``N × num_classes`` on the images' device,
            rows summing to 1.
        """
        n, _, h, w = _check_images(images)
        labels = _host_labels(targets, n, self.num_classes)
        if params is None:
            params, plan = self._draw(n, h, w, None, record=False)
        elif isinstance(params, MixParams):
            params.check(n, h, w)
            plan = _Plan.of(params)
        else:
            raise TypeError(f"params must be a MixParams or None, got {type(params).__name__}")
        mixed = _mix_images(images, params, inplace, plan)
        return mixed, _mixed_labels(labels, self.num_classes, self.label_smoothing, plan, images.device)


class MixupCutmixCollator:
    """A DataLoader ``collate_fn``: stacks ``(image C×H×W, class)`` samples into one new batch and mixes inside it.

    Papers: mixup (https://arxiv.org/abs/1710.09412), CutMix (https://arxiv.org/abs/1905.04899).

    Takes the arguments of :class:`MixupCutmix`. The batch tensor is allocated once and mixed in place, so the
    result is exactly ``MixupCutmix(...)(default_collate(samples)..., params=...)`` with no further copy.
    In loader workers with an explicit ``generator``, each worker draws from a generator seeded by the generator's
    initial seed and the worker's seed (which the DataLoader changes per worker and per epoch), so workers never
    repeat each other's draws; without one, torch's per-worker global generator is used.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        label_smoothing: float = 0.0,
        generator: torch.Generator | None = None,
        *,
        correct_lam: bool = True,
    ) -> None:
        self.mixer = MixupCutmix(
            num_classes,
            mixup_alpha,
            cutmix_alpha,
            prob,
            switch_prob,
            mode,
            label_smoothing,
            generator,
            correct_lam=correct_lam,
        )
        self._worker_seed: int | None = None
        self._worker_generator: torch.Generator | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mixer!r})"

    def _generator(self) -> torch.Generator | None:
        g = self.mixer.generator
        info = torch.utils.data.get_worker_info()
        if g is None or info is None:
            return g
        if self._worker_seed != info.seed:
            self._worker_seed = info.seed
            seed = (g.initial_seed() * 0x9E3779B97F4A7C15 + info.seed) % 2**64
            self._worker_generator = torch.Generator().manual_seed(seed)
        return self._worker_generator

    def sample_params(self, batch_size: int, height: int, width: int) -> MixParams:
        """The draws for one batch, from this worker's generator (see the class docstring)."""
        return self.mixer.sample_params(batch_size, height, width, generator=self._generator())

    def __call__(
        self, batch: Sequence[tuple[Tensor, int]], *, params: MixParams | None = None
    ) -> tuple[Tensor, Tensor]:
        """Collate ``(image, class)`` samples and mix them: ``(images N×C×H×W, soft targets N×num_classes)``.

        The samples themselves are never modified; ``params`` replaces the draws (as in :class:`MixupCutmix`).
        """
        if not isinstance(batch, Sequence) or len(batch) == 0:
            raise ValueError("batch must be a non-empty sequence of (image, target) samples")
        images, labels = [], []
        for k, sample in enumerate(batch):
            if not isinstance(sample, Sequence) or len(sample) != 2:
                raise TypeError(f"batch[{k}] must be an (image, target) pair")
            images.append(torch.as_tensor(sample[0]))
            labels.append(_sample_label(sample[1], k))
        first = images[0]
        for k, img in enumerate(images):
            if img.shape != first.shape or img.dtype != first.dtype:
                raise ValueError(
                    f"batch[{k}] image has shape {tuple(img.shape)} / {img.dtype}, "
                    f"batch[0] has {tuple(first.shape)} / {first.dtype}: samples must match"
                )
        if first.ndim != 3:
            raise ValueError(f"each image must be C×H×W, got shape {tuple(first.shape)}")
        out = torch.empty((len(images), *first.shape), dtype=first.dtype)
        torch.stack(images, out=out)
        targets = torch.tensor(labels, dtype=torch.int64)
        if params is None:
            params = self.sample_params(len(images), first.shape[-2], first.shape[-1])
        return self.mixer(out, targets, inplace=True, params=params)


# ----------------------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _layout(n: int, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flip partners, the draw (unit) of each element, and which elements have a partner other than themselves."""
    index = np.arange(n)
    partner = n - 1 - index
    if mode == "batch":
        unit = np.zeros_like(index)
    elif mode == "pair":
        unit = np.minimum(np.minimum(index, partner), max(0, n // 2 - 1))
    else:
        unit = index
    paired = partner != index
    for a in (partner, unit, paired):
        a.flags.writeable = False
    return partner, unit, paired


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_num_classes(num_classes: object) -> int:
    return _check_int("num_classes", num_classes, 2)


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _check_alpha(name: str, value: object) -> float:
    value = _check_real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (0 disables the method), got {value}")
    return value


def _check_unit(name: str, value: object, *, upper_open: bool = False) -> float:
    value = _check_real(name, value)
    if not (0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1{')' if upper_open else ']'}, got {value}")
    return value


def _check_images(images: object) -> tuple[int, int, int, int]:
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must be N×C×H×W (rank 4), got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating, got {images.dtype}")
    n, c, h, w = images.shape
    if c not in CHANNELS:
        raise ValueError(
            f"images must have C in {CHANNELS} channels (N×C×H×W), got shape {tuple(images.shape)}; "
            "channels-last input needs images.permute(0, 3, 1, 2)"
        )
    if h < 1 or w < 1:
        raise ValueError(f"images must have H, W >= 1, got shape {tuple(images.shape)}")
    return n, c, h, w


def _sample_label(label: object, k: int) -> int:
    """One sample's class index (an int, a NumPy integer or a 0-d integer tensor), as :func:`_check_targets` wants."""
    if isinstance(label, Tensor):
        if label.numel() != 1 or label.ndim > 1:
            raise ValueError(f"batch[{k}] target must be one class index, got a tensor of shape {tuple(label.shape)}")
        if label.is_floating_point() or label.is_complex() or label.dtype == torch.bool:
            raise TypeError(f"batch[{k}] target must be an integer class index, got a {label.dtype} tensor")
        return int(label.item())
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"batch[{k}] target must be an integer class index, got {type(label).__name__} {label!r}")
    return int(label)


def _check_targets(targets: object, n: int | None, num_classes: int) -> Tensor:
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a torch.Tensor of class indices, got {type(targets).__name__}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"targets must hold integer class indices, got {targets.dtype}")
    if targets.ndim != 1 or (n is not None and targets.shape[0] != n):
        raise ValueError(f"targets must have shape ({'N' if n is None else n},), got {tuple(targets.shape)}")
    if targets.numel():
        low, high = torch.stack([targets.min(), targets.max()]).tolist()  # one device synchronisation at most
        if low < 0 or high >= num_classes:
            raise ValueError(f"targets must lie in [0, num_classes={num_classes}), got values in [{low}, {high}]")
    return targets.long()


def _host_labels(targets: object, n: int, num_classes: int) -> np.ndarray:
    """The targets as an int64 NumPy array on the host, checked like :func:`_check_targets`. Host targets (as the
    loader and the prefetcher hand them over) cost no device work; device targets are copied once (their one
    synchronisation)."""
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a torch.Tensor of class indices, got {type(targets).__name__}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"targets must hold integer class indices, got {targets.dtype}")
    if targets.ndim != 1 or targets.shape[0] != n:
        raise ValueError(f"targets must have shape ({n},), got {tuple(targets.shape)}")
    labels = (targets if targets.device.type == "cpu" else targets.cpu()).numpy()
    if labels.dtype != np.int64:
        labels = labels.astype(np.int64)
    if n and labels.view(np.uint64).max() >= num_classes:  # one pass: a negative label wraps to a huge one
        low, high = int(labels.min()), int(labels.max())
        raise ValueError(f"targets must lie in [0, num_classes={num_classes}), got values in [{low}, {high}]")
    return labels


def _as_lam(lam: float | Tensor, n: int) -> Tensor:
    if isinstance(lam, Tensor):
        lam_t = lam.detach().double().cpu().reshape(-1)
        lam_t = lam_t.expand(n).clone() if lam_t.numel() == 1 else lam_t
    else:
        lam_t = torch.full((n,), _check_real("lam", lam), dtype=torch.float64)
    if lam_t.shape != (n,):
        raise ValueError(f"lam must be a float or have shape ({n},), got {tuple(lam_t.shape)}")
    if n and not bool(((lam_t >= 0) & (lam_t <= 1)).all()):
        raise ValueError("lam must lie in [0, 1]")
    return lam_t


def _as_index(partner_index: object, n: int) -> Tensor:
    if not isinstance(partner_index, Tensor) or partner_index.is_floating_point():
        raise TypeError("partner_index must be an integer torch.Tensor")
    index = partner_index.cpu().long()
    if index.shape != (n,) or not torch.equal(index.sort().values, torch.arange(n)):
        raise ValueError(f"partner_index must be a permutation of range({n})")
    return index
