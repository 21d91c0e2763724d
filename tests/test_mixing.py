"""Mixup / CutMix: exact pixel arithmetic with injected draws, statistics of the draws, agreement with timm and
torchvision, the collator, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from timm.data import Mixup
from timm.data.mixup import cutmix_bbox_and_lam, mixup_target
from torch.utils.data import DataLoader, default_collate
from torchvision.transforms import v2

from timm_recipes.data import mixing
from timm_recipes.data.mixing import (
    MixParams,
    MixupCutmix,
    MixupCutmixCollator,
    cutmix_batch,
    mixup_batch,
    smooth_one_hot,
)

C = 10  # classes
P_MIN = 1e-3  # significance of every statistical test below (all at fixed seeds)


def _images(n: int, dtype: torch.dtype = torch.float32, h: int = 12, w: int = 15, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g)
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


def _reference(x: torch.Tensor, p: MixParams) -> torch.Tensor:
    """The lecture's formulas, element by element, in float64 (not rounded)."""
    ref = x.double().clone()
    for i, j in enumerate(p.partner.tolist()):
        if p.use_cutmix[i]:
            y0, y1, x0, x1 = p.box[i].tolist()
            ref[i, :, y0:y1, x0:x1] = x[j, :, y0:y1, x0:x1].double()
        else:
            lam = float(p.lam[i])
            ref[i] = lam * x[i].double() + (1 - lam) * x[j].double()
    return ref


def _assert_matches_reference(out: torch.Tensor, ref: torch.Tensor) -> None:
    if out.dtype == torch.uint8:
        # Rounded to the nearest integer; only an exact tie (x.5, which float32 arithmetic cannot pin down) may go
        # either way.
        tie = ((ref - ref.floor()) - 0.5).abs() < 1e-4
        assert torch.equal(out.double()[~tie], ref.round()[~tie])
        assert ((out.double() - ref)[tie].abs() <= 0.5 + 1e-4).all()
    else:
        torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-6)


def _soft_reference(targets: torch.Tensor, p: MixParams, smoothing: float = 0.0) -> torch.Tensor:
    e = torch.full((len(targets), C), smoothing / C, dtype=torch.float64)
    e[torch.arange(len(targets)), targets] = 1 - smoothing * (C - 1) / C
    lam = p.lam.double()[:, None]
    return lam * e + (1 - lam) * e[p.partner]


# ----------------------------------------------------------------------------------------------------------------------
# Label encoding
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_smooth_one_hot_is_the_lecture_encoding(eps: float) -> None:
    targets = torch.tensor([0, 3, 9, 3])
    y = smooth_one_hot(targets, C, eps)
    assert y.dtype == torch.float32 and y.shape == (4, C)
    on = torch.tensor(1 - eps * (C - 1) / C, dtype=torch.float32)
    off = torch.tensor(eps / C, dtype=torch.float32)
    mask = torch.zeros(4, C, dtype=torch.bool)
    mask[torch.arange(4), targets] = True
    assert torch.equal(y[mask], on.expand(4)) and torch.equal(y[~mask], off.expand(4 * (C - 1)))
    torch.testing.assert_close(y.sum(1), torch.ones(4))
    # timm's encoding (off = eps / C, on = 1 - eps + eps / C) is the same vector.
    torch.testing.assert_close(y, mixup_target(targets, C, lam=1.0, smoothing=eps))


# ----------------------------------------------------------------------------------------------------------------------
# Exact arithmetic with injected draws
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_batch_mixup_with_given_lambda_follows_the_formula(dtype: torch.dtype, n: int) -> None:
    x = _images(n, dtype)
    targets = torch.arange(n) % C
    p = MixParams.for_batch(n, lam=0.3)
    out, y = MixupCutmix(C)(x, targets, params=p)
    if dtype == torch.bfloat16:
        torch.testing.assert_close(out.double(), _reference(x, p), rtol=1e-2, atol=1e-2)
    else:
        _assert_matches_reference(out, _reference(x, p))
    torch.testing.assert_close(y.double(), _soft_reference(targets, p), rtol=0, atol=1e-7)
    if n % 2:  # the middle element is its own partner: unmixed
        assert torch.equal(out[n // 2], x[n // 2]) and torch.equal(y[n // 2], smooth_one_hot(targets, C)[n // 2])


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_empty_batch(mode: str) -> None:
    out, y = MixupCutmix(C, 1.0, 1.0, mode=mode)(torch.zeros(0, 3, 4, 5), torch.zeros(0, dtype=torch.int64))
    assert out.shape == (0, 3, 4, 5) and y.shape == (0, C)


def test_uint8_mixup_rounds_to_nearest_not_down() -> None:
    x = torch.zeros(2, 1, 1, 4, dtype=torch.uint8)
    x[0, 0, 0] = torch.tensor([0, 0, 10, 255], dtype=torch.uint8)
    x[1, 0, 0] = torch.tensor([1, 3, 11, 0], dtype=torch.uint8)
    out, _ = mixup_batch(x, smooth_one_hot(torch.tensor([0, 1]), C), 0.2, torch.tensor([1, 0]))
    # 0.2*0 + 0.8*1 = 0.8 -> 1; 0.8*3 = 2.4 -> 2; 0.2*10 + 0.8*11 = 10.8 -> 11; 0.2*255 = 51 -> 51
    assert out[0, 0, 0].tolist() == [1, 2, 11, 51]
    # 0.2*1 = 0.2 -> 0; 0.2*3 = 0.6 -> 1; 0.2*11 + 0.8*10 = 10.2 -> 10; 0.8*255 = 204 -> 204
    assert out[1, 0, 0].tolist() == [0, 1, 10, 204]


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
@pytest.mark.parametrize("n", [1, 2, 7, 10])
def test_sampled_draws_are_applied_exactly(mode: str, dtype: torch.dtype, n: int) -> None:
    mixer = MixupCutmix(C, mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.8, mode=mode, label_smoothing=0.1)
    g = torch.Generator().manual_seed(n)
    x, targets = _images(n, dtype, seed=n), torch.randint(0, C, (n,), generator=g)
    for _ in range(4):
        p = mixer.sample_params(n, 12, 15, generator=g)
        out, y = mixer(x, targets, params=p)
        _assert_matches_reference(out, _reference(x, p))
        torch.testing.assert_close(y.double(), _soft_reference(targets, p, 0.1), rtol=0, atol=1e-7)
        torch.testing.assert_close(y.sum(1), torch.ones(n))


def test_cutmix_label_weights_equal_kept_pixel_fractions_exactly() -> None:
    n, h, w = 9, 13, 17
    mixer = MixupCutmix(C, mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem")
    x = _images(n, h=h, w=w)  # random floats: a pixel equals its own original only if it was kept
    targets = torch.arange(n)  # all classes distinct, no smoothing: y[i, targets[i]] is the kept weight
    g = torch.Generator().manual_seed(1)
    seen_clipped = 0
    for _ in range(20):
        p = mixer.sample_params(n, h, w, generator=g)
        out, y = mixer(x, targets, params=p)
        for i, j in enumerate(p.partner.tolist()):
            if i == j:
                assert torch.equal(out[i], x[i]) and float(p.lam[i]) == 1.0
                continue
            kept = int((out[i] == x[i]).all(0).sum())
            assert float(p.lam[i]) == kept / (h * w)  # exactly, the pixel fraction
            assert float(y[i, i]) == np.float32(kept / (h * w)) and float(y[i, j]) == np.float32(1 - kept / (h * w))
            y0, y1, x0, x1 = p.box[i].tolist()
            assert torch.equal(out[i, :, y0:y1, x0:x1], x[j, :, y0:y1, x0:x1])
            cut_h = int(np.floor(h * np.sqrt(1 - float(p.lam_drawn[i])) + 0.5))
            seen_clipped += (y1 - y0) < cut_h
    assert seen_clipped > 0  # the border clipping (and so the correction) was exercised


def test_mixup_batch_and_cutmix_batch_accept_any_partner() -> None:
    n = 6
    x, soft = _images(n), smooth_one_hot(torch.arange(n), C)
    perm = torch.tensor([2, 0, 5, 1, 3, 4])  # not an involution: the gather path
    lam = torch.linspace(0.1, 0.9, n, dtype=torch.float64)
    out, y = mixup_batch(x, soft, lam, perm)
    p = MixParams(lam=lam, use_cutmix=torch.zeros(n, dtype=torch.bool), box=torch.zeros(n, 4, dtype=torch.int64),
                  partner=perm)  # fmt: skip
    _assert_matches_reference(out, _reference(x, p))
    torch.testing.assert_close(y.double(), _soft_reference(torch.arange(n), p), rtol=0, atol=1e-7)
    box = (2, 9, 3, 8)
    out, y = cutmix_batch(x, soft, box, perm)
    expected = x.clone()
    expected[:, :, 2:9, 3:8] = x[perm][:, :, 2:9, 3:8]
    assert torch.equal(out, expected)
    kept = 1 - 7 * 5 / (12 * 15)
    torch.testing.assert_close(y[torch.arange(n), torch.arange(n)], torch.full((n,), kept))


# ----------------------------------------------------------------------------------------------------------------------
# Statistics of the draws
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.2, 1.0, 3.0])
@pytest.mark.parametrize("method", ["mixup", "cutmix"])
def test_lambda_follows_beta(alpha: float, method: str) -> None:
    kw = {"mixup_alpha": alpha, "cutmix_alpha": 0.0} if method == "mixup" else {"mixup_alpha": 0, "cutmix_alpha": alpha}
    mixer = MixupCutmix(C, mode="elem", generator=torch.Generator().manual_seed(3), **kw)
    p = mixer.sample_params(4000, 224, 224)
    assert bool(p.use_cutmix.all()) == (method == "cutmix")
    assert stats.kstest(p.lam_drawn.numpy(), stats.beta(alpha, alpha).cdf).pvalue > P_MIN
    # batch mode: one draw per batch
    batch = MixupCutmix(C, mode="batch", generator=torch.Generator().manual_seed(4), **kw)
    draws = [batch.sample_params(4, 224, 224) for _ in range(1000)]
    assert all(len(set(d.lam.tolist())) == 1 for d in draws)
    assert stats.kstest([float(d.lam_drawn[0]) for d in draws], stats.beta(alpha, alpha).cdf).pvalue > P_MIN


def test_prob_and_switch_prob_frequencies() -> None:
    mixer = MixupCutmix(C, mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.6, switch_prob=0.3, mode="elem")
    p = mixer.sample_params(6001, 32, 32, generator=torch.Generator().manual_seed(5))
    paired = p.partner != torch.arange(6001)
    mixed = (p.lam < 1) | p.use_cutmix
    assert stats.binomtest(int(mixed[paired].sum()), 6000, 0.6).pvalue > P_MIN
    n_cut = int(p.use_cutmix.sum())
    assert stats.binomtest(n_cut, int(mixed.sum()), 0.3).pvalue > P_MIN
    assert not bool(mixed[~paired].any())  # the middle element of an odd batch is unmixed


def test_pair_mode_shares_draws_symmetrically() -> None:
    mixer = MixupCutmix(C, mixup_alpha=1.0, cutmix_alpha=1.0, mode="pair", prob=0.7)
    p = mixer.sample_params(11, 20, 20, generator=torch.Generator().manual_seed(6))
    assert torch.equal(p.lam, p.lam.flip(0)) and torch.equal(p.box, p.box.flip(0))
    assert torch.equal(p.use_cutmix, p.use_cutmix.flip(0)) and float(p.lam[5]) == 1.0
    assert len(set(p.lam[:5].tolist())) > 1  # one draw per pair, not per batch


def test_cutmix_box_centre_uniform_and_size_formula() -> None:
    h, w = 16, 24
    mixer = MixupCutmix(C, mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem")
    p = mixer.sample_params(20000, h, w, generator=torch.Generator().manual_seed(7))
    cy, cx = p.center[:, 0].numpy(), p.center[:, 1].numpy()
    assert stats.chisquare(np.bincount(cy, minlength=h)).pvalue > P_MIN
    assert stats.chisquare(np.bincount(cx, minlength=w)).pvalue > P_MIN
    assert stats.chisquare(np.bincount(cy * w + cx, minlength=h * w)).pvalue > P_MIN  # jointly uniform
    ratio = np.sqrt(1 - p.lam_drawn.numpy())
    cut_h, cut_w = np.floor(h * ratio + 0.5).astype(int), np.floor(w * ratio + 0.5).astype(int)
    y0, y1, x0, x1 = p.box.numpy().T
    np.testing.assert_array_equal(y0, np.clip(cy - cut_h // 2, 0, h))
    np.testing.assert_array_equal(y1, np.clip(cy - cut_h // 2 + cut_h, 0, h))
    np.testing.assert_array_equal(x1 - x0, np.minimum(x1, w) - np.maximum(x0, 0))
    inside = (cy - cut_h // 2 >= 0) & (cy - cut_h // 2 + cut_h <= h) & (cx - cut_w // 2 >= 0)
    inside &= cx - cut_w // 2 + cut_w <= w
    np.testing.assert_array_equal((y1 - y0)[inside], cut_h[inside])
    np.testing.assert_array_equal((x1 - x0)[inside], cut_w[inside])
    # unclipped boxes keep the lecture's area ratio up to the rounding to whole pixels
    area = (y1 - y0) * (x1 - x0) / (h * w)
    assert np.abs(area[inside] - (1 - p.lam_drawn.numpy()[inside])).max() < (h + w + 1) / (h * w)


def test_generator_makes_draws_reproducible() -> None:
    mixer = MixupCutmix(C, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem")
    a = mixer.sample_params(8, 10, 10, generator=torch.Generator().manual_seed(9))
    b = mixer.sample_params(8, 10, 10, generator=torch.Generator().manual_seed(9))
    torch.manual_seed(9)
    c = mixer.sample_params(8, 10, 10)
    torch.manual_seed(9)
    d = mixer.sample_params(8, 10, 10)
    for f in ("lam", "use_cutmix", "box", "partner", "lam_drawn", "center"):
        assert torch.equal(getattr(a, f), getattr(b, f)) and torch.equal(getattr(c, f), getattr(d, f))
    assert not torch.equal(a.lam, mixer.sample_params(8, 10, 10, generator=torch.Generator().manual_seed(10)).lam)


def test_disabled_mixing_only_encodes_targets() -> None:
    x, targets = _images(4), torch.tensor([1, 2, 3, 4])
    for mixer in (MixupCutmix(C, 0.0, 0.0, label_smoothing=0.1), MixupCutmix(C, prob=0.0, label_smoothing=0.1)):
        out, y = mixer(x, targets)
        assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
        assert torch.equal(y, smooth_one_hot(targets, C, 0.1))
    mixer = MixupCutmix(C, 1.0, 1.0)
    mixer.mixup_enabled = False
    assert torch.equal(mixer(x, targets)[0], x)


# ----------------------------------------------------------------------------------------------------------------------
# Memory behaviour and code paths
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("alphas", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_caller_tensors_untouched_unless_inplace(mode: str, alphas: tuple[float, float]) -> None:
    mixer = MixupCutmix(C, *alphas, mode=mode, generator=torch.Generator().manual_seed(11))
    for dtype in (torch.float32, torch.uint8):
        x, targets = _images(7, dtype), torch.arange(7)
        x_copy, t_copy = x.clone(), targets.clone()
        p = mixer.sample_params(7, 12, 15)
        out, _ = mixer(x, targets, params=p)
        assert torch.equal(x, x_copy) and torch.equal(targets, t_copy) and out.data_ptr() != x.data_ptr()
        out_inplace, _ = mixer(x, targets, params=p, inplace=True)
        assert out_inplace is x and torch.equal(x, out) and torch.equal(targets, t_copy)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_chunked_half_batch_and_gather_paths_agree(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    """Pairs a few at a time (CPU), the whole half batch at once (GPUs) and a gathered copy give the same batch."""
    n = 11
    x, targets = _images(n, dtype), torch.arange(n) % C
    image_bytes = x[0].numel() * 4
    for mode in ("batch", "pair", "elem"):
        mixer = MixupCutmix(C, 1.0, 1.0, mode=mode, prob=0.9)
        for seed in range(3):
            p = mixer.sample_params(n, 12, 15, generator=torch.Generator().manual_seed(seed))
            outputs = []
            for devices, chunk_bytes in ((("cpu",), 1), (("cpu",), 2 * image_bytes), ((), 1)):
                with monkeypatch.context() as m:
                    m.setattr(mixing, "CHUNKED_DEVICES", devices)
                    m.setattr(mixing, "CHUNK_BYTES", chunk_bytes)
                    outputs.append(mixer(x, targets, params=p)[0])
                    inplace = mixer(x.clone(), targets, params=p, inplace=True)[0]
                    assert torch.equal(outputs[-1], inplace)
                    _assert_matches_reference(outputs[-1], _reference(x, p))
            assert all(torch.equal(out, outputs[0]) for out in outputs)
            # the same draws with a partner that is not the flip go through one gathered copy of the batch
            shuffle = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            q = MixParams(lam=p.lam, use_cutmix=p.use_cutmix, box=p.box, partner=shuffle)
            _assert_matches_reference(mixer(x, targets, params=q)[0], _reference(x, q))


@pytest.mark.parametrize("devices", [("cpu",), ()])
def test_cut_elements_beside_one_mixup_weight_keep_their_pixels_outside_the_box(monkeypatch, devices) -> None:
    """One Mixup pair (one weight for every blended element) and CutMix pairs in the same batch: a cut element is
    its own image outside its box, on the chunked (CPU) and the whole-batch (GPU) paths alike."""
    n = 6
    x, targets = _images(n), torch.arange(n) % C
    partner = torch.arange(n - 1, -1, -1)
    use = torch.tensor([True, False, True, True, False, True])  # pairs (0, 5) and (2, 3) cut, (1, 4) blended
    box = torch.tensor([[1, 9, 7, 15], [0, 0, 0, 0], [0, 5, 0, 8], [0, 5, 0, 8], [0, 0, 0, 0], [1, 9, 7, 15]])
    lam = torch.where(use, mixing._kept_fraction(box, 12, 15), 0.3).double()
    p = MixParams(lam=lam, use_cutmix=use, box=box, partner=partner)
    monkeypatch.setattr(mixing, "CHUNKED_DEVICES", devices)
    out, y = MixupCutmix(C)(x, targets, params=p)
    _assert_matches_reference(out, _reference(x, p))
    torch.testing.assert_close(y.double(), _soft_reference(targets, p), rtol=0, atol=1e-7)


def test_uint8_and_float_batches_mix_alike() -> None:
    mixer = MixupCutmix(C, 1.0, 1.0, mode="elem")
    x8 = _images(8, torch.uint8)
    p = mixer.sample_params(8, 12, 15, generator=torch.Generator().manual_seed(12))
    out8, y8 = mixer(x8, torch.arange(8), params=p)
    outf, yf = mixer(x8.float(), torch.arange(8), params=p)
    assert (out8.float() - outf.round()).abs().max() <= 1 and torch.equal(y8, yf)
    cut = p.use_cutmix
    assert torch.equal(out8[cut].float(), outf[cut])  # CutMix moves pixels: no rounding at all


def test_channels_last_and_grey_batches() -> None:
    mixer = MixupCutmix(C, 1.0, 1.0, mode="elem")
    x = _images(6).contiguous(memory_format=torch.channels_last)
    p = mixer.sample_params(6, 12, 15, generator=torch.Generator().manual_seed(13))
    _assert_matches_reference(mixer(x, torch.arange(6), params=p)[0], _reference(x, p))
    grey = _images(6)[:, :1]
    _assert_matches_reference(mixer(grey, torch.arange(6), params=p)[0], _reference(grey, p))


# ----------------------------------------------------------------------------------------------------------------------
# Agreement with timm.data.Mixup
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alphas", [(0.8, 0.0), (0.0, 1.0)])
def test_batch_mode_matches_timm_given_its_draws(alphas: tuple[float, float]) -> None:
    n, eps = 8, 0.1
    x, targets = _images(n), torch.randint(0, C, (n,), generator=torch.Generator().manual_seed(14))
    timm_mix = Mixup(mixup_alpha=alphas[0], cutmix_alpha=alphas[1], label_smoothing=eps, num_classes=C)
    np.random.seed(0)
    lam, use_cutmix = timm_mix._params_per_batch()
    if use_cutmix:
        box, _ = cutmix_bbox_and_lam(x.shape, lam)
        p = MixParams.for_batch(n, box=tuple(int(v) for v in box), height=12, width=15)
    else:
        p = MixParams.for_batch(n, lam=lam)
    np.random.seed(0)
    timm_x, timm_y = timm_mix(x.clone(), targets)
    out, y = MixupCutmix(C, *alphas, label_smoothing=eps)(x, targets, params=p)
    torch.testing.assert_close(out, timm_x, rtol=0, atol=1e-6)
    torch.testing.assert_close(y, timm_y, rtol=0, atol=1e-6)


def test_pair_mode_matches_timm_given_its_draws() -> None:
    n, h, w = 10, 12, 15
    x, targets = _images(n), torch.arange(n)
    timm_mix = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="pair", label_smoothing=0.0, num_classes=C)
    np.random.seed(3)
    lam_pairs, cut_pairs = timm_mix._params_per_elem(n // 2)
    lam, use, box = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.bool), torch.zeros(n, 4).long()
    for i in range(n // 2):
        j = n - 1 - i
        if lam_pairs[i] == 1:
            continue
        if cut_pairs[i]:
            b, _ = cutmix_bbox_and_lam(x[i].shape, lam_pairs[i])
            box[i] = box[j] = torch.tensor([int(v) for v in b])
            use[i] = use[j] = True
            lam[i] = lam[j] = (h * w - (b[1] - b[0]) * (b[3] - b[2])) / (h * w)
        else:
            lam[i] = lam[j] = float(lam_pairs[i])
    assert use.any() and (~use).any()
    p = MixParams(lam=lam, use_cutmix=use, box=box, partner=torch.arange(n - 1, -1, -1))
    np.random.seed(3)
    timm_x, timm_y = timm_mix(x.clone(), targets)
    out, y = MixupCutmix(C, 1.0, 1.0, mode="pair")(x, targets, params=p)
    torch.testing.assert_close(out, timm_x, rtol=0, atol=1e-6)
    torch.testing.assert_close(y, timm_y, rtol=0, atol=1e-6)


def test_lambda_distribution_matches_timm() -> None:
    draws = 3000
    for alphas in ((0.8, 0.0), (0.0, 1.0)):
        timm_mix = Mixup(mixup_alpha=alphas[0], cutmix_alpha=alphas[1], num_classes=C)
        np.random.seed(1)
        timm_lam = []
        for _ in range(draws):
            lam, use_cutmix = timm_mix._params_per_batch()
            timm_lam.append(cutmix_bbox_and_lam((224, 224), lam)[1] if use_cutmix else lam)
        ours = MixupCutmix(C, *alphas, mode="elem").sample_params(draws, 224, 224, generator=torch.Generator())
        ours_lam = ours.lam[ours.partner != torch.arange(draws)].numpy()
        assert stats.ks_2samp(timm_lam, ours_lam).pvalue > P_MIN


# ----------------------------------------------------------------------------------------------------------------------
# Agreement with torchvision.transforms.v2.MixUp / CutMix
# ----------------------------------------------------------------------------------------------------------------------
def test_matches_torchvision_given_its_draws() -> None:
    n = 6
    x, targets = _images(n), torch.tensor([0, 4, 2, 9, 4, 7])
    roll = (torch.arange(n) - 1) % n  # torchvision pairs element i with i - 1
    soft = smooth_one_hot(targets, C)
    tv_mixup, tv_cutmix = v2.MixUp(alpha=0.8, num_classes=C), v2.CutMix(alpha=1.0, num_classes=C)
    torch.manual_seed(0)
    lam = float(tv_mixup._dist.sample(()))
    torch.manual_seed(0)
    tv_x, tv_y = tv_mixup(x, targets)
    out, y = mixup_batch(x, soft, lam, roll)
    torch.testing.assert_close(out, tv_x, rtol=0, atol=1e-6)
    torch.testing.assert_close(y, tv_y, rtol=0, atol=1e-6)

    torch.manual_seed(1)
    params = tv_cutmix.make_params([x])
    torch.manual_seed(1)
    tv_x, tv_y = tv_cutmix(x, targets)
    x1, y1, x2, y2 = params["box"]
    out, y = cutmix_batch(x, soft, (y1, y2, x1, x2), roll)
    assert torch.equal(out, tv_x)
    torch.testing.assert_close(y, tv_y, rtol=0, atol=1e-6)
    assert float(y[0, 0]) == pytest.approx(params["lam_adjusted"], abs=1e-7)


def test_lambda_distribution_matches_torchvision() -> None:
    torch.manual_seed(2)
    tv_mixup_lam = v2.MixUp(alpha=0.5, num_classes=C)._dist.sample((3000,)).flatten().numpy()
    ours = MixupCutmix(C, 0.5, 0.0, mode="elem").sample_params(3000, 224, 224, generator=torch.Generator())
    assert stats.ks_2samp(tv_mixup_lam, ours.lam_drawn.numpy()).pvalue > P_MIN
    image = torch.zeros(1, 3, 224, 224)
    tv_cutmix = v2.CutMix(alpha=1.0, num_classes=C)
    tv_cut_lam = [tv_cutmix.make_params([image])["lam_adjusted"] for _ in range(2000)]
    ours = MixupCutmix(C, 0.0, 1.0, mode="elem").sample_params(2000, 224, 224, generator=torch.Generator())
    assert stats.ks_2samp(tv_cut_lam, ours.lam.numpy()).pvalue > P_MIN


# ----------------------------------------------------------------------------------------------------------------------
# The collator
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_collator_equals_collate_then_transform(dtype: torch.dtype, mode: str) -> None:
    kw = {"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "mode": mode, "label_smoothing": 0.1}
    collator, mixer = MixupCutmixCollator(C, **kw), MixupCutmix(C, **kw)
    x = _images(7, dtype)
    samples = [(x[i].clone(), i % C) for i in range(7)]
    for seed in range(3):
        p = collator.mixer.sample_params(7, 12, 15, generator=torch.Generator().manual_seed(seed))
        images, targets = default_collate(samples)
        expected = mixer(images, targets, params=p)
        got = collator(samples, params=p)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        assert all(torch.equal(s[0], x[i]) for i, s in enumerate(samples))  # samples untouched


def test_collator_workers_draw_differently() -> None:
    samples = [(_images(1)[0], 0), (_images(1, seed=1)[0], 1)] * 8
    collator = MixupCutmixCollator(C, mixup_alpha=1.0, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(samples, batch_size=2, num_workers=2, collate_fn=collator)
    lams = [float(y[0, 0]) for _, y in loader]  # every batch holds the same two images: only the draws differ
    assert len(set(lams)) == len(lams)
    first = MixupCutmixCollator(C, mixup_alpha=1.0, generator=torch.Generator().manual_seed(0))
    second = MixupCutmixCollator(C, mixup_alpha=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first(samples[:4])[0], second(samples[:4])[0])


# ----------------------------------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    x, targets = _images(9, dtype), torch.arange(9)
    for mode in ("batch", "pair", "elem"):
        mixer = MixupCutmix(C, 1.0, 1.0, mode=mode, label_smoothing=0.1)
        for seed in range(3):
            p = mixer.sample_params(9, 12, 15, generator=torch.Generator().manual_seed(seed))
            cpu = mixer(x, targets, params=p)
            gpu = mixer(x.cuda(), targets.cuda(), params=p)
            gpu_inplace = mixer(x.cuda(), targets.cuda(), params=p, inplace=True)
            assert gpu[0].device.type == "cuda" and gpu[1].device.type == "cuda"
            assert torch.equal(gpu[0], gpu_inplace[0])
            assert (cpu[0].double() - gpu[0].cpu().double()).abs().max() <= (1 if dtype == torch.uint8 else 1e-6)
            torch.testing.assert_close(cpu[1], gpu[1].cpu(), rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"num_classes": 10.0}, TypeError, "num_classes"),
        ({"mixup_alpha": -0.1}, ValueError, "mixup_alpha"),
        ({"cutmix_alpha": -1.0}, ValueError, "cutmix_alpha"),
        ({"mixup_alpha": float("nan")}, ValueError, "mixup_alpha"),
        ({"prob": 1.5}, ValueError, "prob"),
        ({"prob": -0.1}, ValueError, "prob"),
        ({"switch_prob": 2.0}, ValueError, "switch_prob"),
        ({"mode": "half"}, ValueError, "mode"),
        ({"label_smoothing": 1.0}, ValueError, "label_smoothing"),
        ({"label_smoothing": -0.1}, ValueError, "label_smoothing"),
        ({"generator": 0}, TypeError, "generator"),
        ({"correct_lam": False}, ValueError, "correct_lam"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], name: str) -> None:
    kwargs = {"num_classes": C, **kwargs}
    with pytest.raises(error, match=name):
        MixupCutmix(**kwargs)
    with pytest.raises(error, match=name):
        MixupCutmixCollator(**kwargs)


def test_bad_batches() -> None:
    mixer = MixupCutmix(C, 1.0, 1.0)
    x, t = _images(4), torch.arange(4)
    with pytest.raises(ValueError, match="targets"):
        mixer(x, torch.tensor([0, 1, 2, C]))
    with pytest.raises(ValueError, match="targets"):
        mixer(x, torch.tensor([0, 1, -1, 2]))
    with pytest.raises(ValueError, match="targets"):
        mixer(x, torch.arange(3))
    with pytest.raises(TypeError, match="targets"):
        mixer(x, t.float())
    with pytest.raises(ValueError, match="images"):
        mixer(x[0], t)
    with pytest.raises(ValueError, match="images"):
        mixer(x.permute(0, 2, 3, 1), t)  # channels last
    with pytest.raises(TypeError, match="images"):
        mixer(x.numpy(), t)
    with pytest.raises(TypeError, match="images"):
        mixer(x.to(torch.int32), t)
    with pytest.raises(ValueError, match="batch"):
        mixer(x, t, params=mixer.sample_params(6, 12, 15))
    bad_lam = MixParams.for_batch(4, box=(0, 4, 0, 5), height=12, width=15)
    bad_lam = MixParams(lam=bad_lam.lam * 0.5, use_cutmix=bad_lam.use_cutmix, box=bad_lam.box, partner=bad_lam.partner)
    with pytest.raises(ValueError, match="lam"):
        mixer(x, t, params=bad_lam)
    with pytest.raises(ValueError, match="box"):
        mixer(x, t, params=MixParams.for_batch(4, box=(0, 30, 0, 30), height=40, width=40))
    with pytest.raises(ValueError, match="lam"):
        MixParams.for_batch(4, lam=1.5)
    with pytest.raises(ValueError, match="partner_index"):
        mixup_batch(x, smooth_one_hot(t, C), 0.5, torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="box"):
        cutmix_batch(x, smooth_one_hot(t, C), (5, 2, 0, 3), torch.arange(4))
    with pytest.raises(ValueError, match="batch"):
        MixupCutmixCollator(C)([(x[0], 0), (x[1, :, :5], 1)])
    with pytest.raises(ValueError, match="batch"):
        MixupCutmixCollator(C)([])


# ----------------------------------------------------------------------------------------------------------------------
# The fast paths draw and plan exactly what the general path does
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alphas", [(1.0, 0.0), (0.0, 1.0), (0.8, 1.0), (0.0, 0.0)])
@pytest.mark.parametrize("n", [0, 1, 7, 8])
def test_batch_mode_scalar_draws_equal_the_array_draws(alphas: tuple[float, float], n: int) -> None:
    mixer = MixupCutmix(C, *alphas, prob=0.8)
    for seed in range(25):
        fast, fast_plan = mixer._sample(n, 12, 15, torch.Generator().manual_seed(seed))
        slow, slow_plan = mixer._sample(n, 12, 15, torch.Generator().manual_seed(seed), scalar=False)
        for field in ("lam", "use_cutmix", "box", "partner", "lam_drawn", "center"):
            assert torch.equal(getattr(fast, field), getattr(slow, field)), field
        for field in ("lam", "partner", "weight", "cut", "boxes"):
            assert np.array_equal(getattr(fast_plan, field), getattr(slow_plan, field)), field
        for field in ("flip", "selfs", "lam_scalar", "weight_scalar", "same_box", "active", "any_cut"):
            assert getattr(fast_plan, field) == getattr(slow_plan, field), field
        # and __call__ (which skips the MixParams record) mixes exactly as the recorded draws say
        x = _images(n) if n else torch.empty(0, 3, 12, 15)
        mixer.generator = torch.Generator().manual_seed(seed)
        out, y = mixer(x, torch.arange(n) % C)
        mixer.generator = None
        ref_out, ref_y = mixer(x, torch.arange(n) % C, params=fast)
        assert torch.equal(out, ref_out) and torch.equal(y, ref_y)
