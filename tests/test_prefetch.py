"""The GPU path, checked on the CPU: uint8 workers + DevicePrefetcher (normalise, mix, channels-last) give exactly the
batches of the CPU pipeline (normalise in the workers, mix in the collator), in the same order. CUDA-only checks
(streams, pinned copies, the trainer on a GPU) are skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from timm_recipes.config import recipe_from_dict
from timm_recipes.data import CutoutConfig, DigitsDataset, MixupCutmix, MixupCutmixCollator, create_loader
from timm_recipes.data.pipelines import eval_pipeline, multiscale_crop_pipeline
from timm_recipes.data.prefetch import DevicePrefetcher, uint8_dataset

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _train_set() -> DigitsDataset:
    pipeline = multiscale_crop_pipeline(
        crop_size=16, scale_range=(18, 30), cutout=CutoutConfig(p=0.5, size=0.3), mean=MEAN, std=STD
    )
    return DigitsDataset("val", size=32, transform=pipeline)


def test_uint8_dataset_switches_normalisation_off_in_a_copy() -> None:
    ds = _train_set()
    ds8, mean, std = uint8_dataset(ds)
    assert (mean, std) == (MEAN, STD) and ds8 is not ds and ds8.transform is not ds.transform
    assert ds[0][0].dtype == torch.float32  # the original is untouched
    assert ds8.transform.transforms[-1].normalize is False and ds.transform.transforms[-1].normalize is True
    image, target = ds8[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and target == ds[3][1]
    plain = DigitsDataset("val", size=8)
    assert uint8_dataset(plain) == (plain, None, None)  # nothing to move: returned as it is


@pytest.mark.parametrize("channels_last", [False, True])
def test_prefetched_batches_equal_the_cpu_pipeline_exactly(channels_last: bool) -> None:
    ds = _train_set()
    ds8, mean, std = uint8_dataset(ds)
    # normalisation and order, with two workers (the loader reseeds every sample from (seed, epoch, position))
    cpu = create_loader(ds, batch_size=24, shuffle=True, num_workers=2, seed=3)
    gpu_path = DevicePrefetcher(
        create_loader(ds8, batch_size=24, shuffle=True, num_workers=2, seed=3),
        "cpu",
        mean=mean,
        std=std,
        channels_last=channels_last,
    )
    assert len(gpu_path) == len(cpu)
    for epoch in range(2):
        pairs = list(zip(cpu, gpu_path, strict=True))
        assert len(pairs) == len(cpu)
        for (x, y), (x2, y2) in pairs:
            assert torch.equal(x, x2) and torch.equal(y, y2)  # bit for bit: the same float32 arithmetic
            assert x2.is_contiguous(memory_format=torch.channels_last) == channels_last
        assert gpu_path.epoch == cpu.epoch == epoch + 1  # attributes are the wrapped loader's


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_prefetcher_mixes_like_the_collator(mode: str) -> None:
    ds = _train_set()
    ds8, mean, std = uint8_dataset(ds)
    kwargs = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": mode, "label_smoothing": 0.1}
    collator = MixupCutmixCollator(10, **kwargs, generator=torch.Generator().manual_seed(5))
    cpu = create_loader(ds, batch_size=16, shuffle=True, seed=1, collate_fn=collator, drop_last=True)
    mixer = MixupCutmix(10, **kwargs, generator=torch.Generator().manual_seed(5))
    loader8 = create_loader(ds8, batch_size=16, shuffle=True, seed=1, drop_last=True)
    gpu_path = DevicePrefetcher(
        loader8, "cpu", mean=mean, std=std, channels_last=True, batch_transform=lambda x, t: mixer(x, t, inplace=True)
    )
    batches = list(zip(cpu, gpu_path, strict=True))
    assert len(batches) == len(ds) // 16
    mixed = 0
    for (x, y), (x2, y2) in batches:
        assert torch.equal(x, x2) and torch.equal(y, y2)
        mixed += int((y.max(1).values < 0.9).any())
    assert mixed >= len(batches) // 2  # the draws really mixed most batches


def test_prefetcher_passes_float_batches_and_checks_arguments() -> None:
    ds = DigitsDataset("val", size=16, transform=eval_pipeline(input_size=16, crop_pct=1.0))
    loader = create_loader(ds, batch_size=50, shuffle=False)
    for (x, y), (x2, y2) in zip(loader, DevicePrefetcher(loader, "cpu", mean=MEAN, std=STD), strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)  # already normalised: not normalised twice
    with pytest.raises(ValueError, match="mean and std"):
        DevicePrefetcher(loader, "cpu", mean=MEAN)
    with pytest.raises(ValueError, match="std"):
        DevicePrefetcher(loader, "cpu", mean=MEAN, std=(0.2, 0.0, 0.3))
    with pytest.raises(ValueError, match="mean"):
        DevicePrefetcher(loader, "cpu", mean=(float("nan"), 0.0, 0.0), std=STD)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_prefetcher_equals_the_cpu_pipeline() -> None:
    ds = _train_set()
    ds8, mean, std = uint8_dataset(ds)
    cpu = create_loader(ds, batch_size=24, shuffle=True, num_workers=2, seed=3)
    loader8 = create_loader(ds8, batch_size=24, shuffle=True, num_workers=2, seed=3, pin_memory=True)
    gpu_path = DevicePrefetcher(loader8, "cuda", mean=mean, std=std, channels_last=True)
    for (x, y), (x2, y2) in zip(cpu, gpu_path, strict=True):
        assert x2.device.type == "cuda" and x2.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(x2.cpu(), x, rtol=0, atol=1e-6)
        assert torch.equal(y2.cpu(), y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_builders_prefetch_and_mix_on_the_gpu() -> None:
    from timm_recipes.train.builders import build_datasets, create_eval_loader, create_mixing, create_train_loader
    from timm_recipes.train.distributed import Distributed

    recipe = recipe_from_dict(
        {
            "data": {"dataset": "digits", "batch_size": 32},
            "mix": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0},
            "model": {"num_classes": 10},
            "run": {"channels_last": True},
        }
    )
    device = torch.device("cuda")
    data = build_datasets(recipe)
    collate, mixer = create_mixing(recipe, data.num_classes, device, torch.Generator().manual_seed(0))
    assert collate is None
    loader = create_train_loader(recipe, data, Distributed(device=device), device, collate, mixer)
    assert loader.applies_batch_transform
    x, y = next(iter(loader))
    assert x.device.type == "cuda" and x.dtype == torch.float32 and y.shape == (32, data.num_classes)
    x, y = next(iter(create_eval_loader(recipe, data.val, None, device)))
    assert x.device.type == "cuda" and x.dtype == torch.float32 and y.dtype == torch.int64
