"""Preview grids and the `timm-recipes preview` command (timm_recipes/data/preview.py, timm_recipes/cli/preview.py)."""

from __future__ import annotations

import math
import random

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from timm_recipes.data.datasets import DigitsDataset, load_sample_photos
from timm_recipes.data.mixing import MixupCutmix
from timm_recipes.data.pipelines import CutoutConfig, multiscale_crop_pipeline
from timm_recipes.data.preview import LINE_HEIGHT, PAD, preview_mixing, preview_pipeline, to_display


def _expected_shape(tiles: int, cols: int, tile_h: int, tile_w: int, lines: int) -> tuple[int, int, int]:
    rows = math.ceil(tiles / cols)
    return rows * (tile_h + lines * LINE_HEIGHT) + (rows + 1) * PAD, cols * tile_w + (cols + 1) * PAD, 3


def _read_png(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _tile(grid, k: int) -> np.ndarray:
    y0, y1, x0, x1 = grid.boxes[k]
    return _read_png(grid.path)[y0:y1, x0:x1]


def _enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


@pytest.fixture(scope="module")
def photo_64() -> np.ndarray:
    photo = load_sample_photos()[1][1]
    return cv2.resize(photo[:, 106:533], (64, 64), interpolation=cv2.INTER_AREA)


def test_pipeline_grid_size_original_first_and_draws_in_order(tmp_path, photo_64):
    pipeline = multiscale_crop_pipeline(crop_size=64, scale_range=(64, 96), cutout=CutoutConfig(p=1.0, size=16))
    grid = preview_pipeline(photo_64, pipeline, 5, tmp_path / "p.png", cols=3, seed=11, min_tile=0)
    png = _read_png(tmp_path / "p.png")
    assert png.shape == _expected_shape(6, 3, 64, 64, 1) == grid.image.shape
    np.testing.assert_array_equal(png, grid.image)
    np.testing.assert_array_equal(_tile(grid, 0), photo_64)  # the original, untouched, first
    # The draws are the pipeline's outputs in order; its float tensors are denormalised back to exact pixels.
    raw = multiscale_crop_pipeline(crop_size=64, scale_range=(64, 96), cutout=CutoutConfig(p=1.0, size=16))
    raw_uint8 = multiscale_crop_pipeline(
        crop_size=64, scale_range=(64, 96), cutout=CutoutConfig(p=1.0, size=16), normalize=False
    )
    for reference in (raw, raw_uint8):
        reference.set_random_state(np.random.default_rng(11), random.Random(11))
        for k in range(1, 6):
            out = reference(image=photo_64)["image"]
            expected = out.permute(1, 2, 0).numpy() if out.dtype == torch.uint8 else to_display(out)
            np.testing.assert_array_equal(_tile(grid, k), expected)
    draws = [_tile(grid, k) for k in range(1, 6)]
    assert len({d.tobytes() for d in draws}) == 5  # different draws
    assert grid.captions[0] == "original 64x64"


def test_pipeline_grid_enlarges_small_tiles_and_fits_large_originals(tmp_path, photo_64):
    small = A.Compose([A.RandomCrop(32, 32)])
    grid = preview_pipeline(photo_64, small, 3, tmp_path / "s.png", seed=0, min_tile=100)
    assert grid.scale == 4  # ceil(100 / 32)
    assert grid.image.shape == _expected_shape(4, 2, 128, 128, 1)
    original_tile = _tile(grid, 0)
    assert original_tile.shape == (128, 128, 3)  # 64×64 fitted into the 32×32 tile, then enlarged 4×
    np.testing.assert_array_equal(
        original_tile, _enlarge(cv2.resize(photo_64, (32, 32), interpolation=cv2.INTER_AREA), 4)
    )
    photo = load_sample_photos()[0][1]
    wide = preview_pipeline(photo, A.Compose([A.CenterCrop(100, 100)]), 1, tmp_path / "w.png", min_tile=0)
    assert _tile(wide, 0).shape == (67, 100, 3)  # 427×640 scaled by 100/640, aspect kept
    np.testing.assert_array_equal(_tile(wide, 1), photo[163:263, 270:370])


def test_pipeline_preview_is_reproducible_and_rejects_bad_arguments(tmp_path, photo_64):
    pipeline = A.Compose([A.RandomCrop(32, 32), A.HorizontalFlip()])
    a = preview_pipeline(photo_64, pipeline, 4, tmp_path / "a.png", seed=3)
    b = preview_pipeline(photo_64, pipeline, 4, tmp_path / "b.png", seed=3)
    c = preview_pipeline(photo_64, pipeline, 4, tmp_path / "c.png", seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)
    with pytest.raises(ValueError, match="n must"):
        preview_pipeline(photo_64, pipeline, 0, tmp_path / "x.png")
    with pytest.raises(ValueError, match="cols"):
        preview_pipeline(photo_64, pipeline, 2, tmp_path / "x.png", cols=0)


def test_to_display_layouts():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_display(hwc), hwc)
    np.testing.assert_array_equal(to_display(torch.from_numpy(hwc).permute(2, 0, 1)), hwc)
    np.testing.assert_array_equal(to_display(hwc.transpose(2, 0, 1)), hwc)
    np.testing.assert_array_equal(to_display(hwc[..., 0]), np.repeat(hwc[..., :1], 3, axis=2))
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    normalised = (torch.from_numpy(hwc).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]) / (
        torch.tensor(std)[:, None, None]
    )
    np.testing.assert_array_equal(to_display(normalised, mean=mean, std=std), hwc)
    with pytest.raises(ValueError, match="image"):
        to_display(np.zeros((4, 5, 6, 2)))


@pytest.fixture(scope="module")
def digit_batch():
    ds = DigitsDataset("test", size=16)
    images = torch.from_numpy(np.stack([ds.image(i) for i in range(7)]).transpose(0, 3, 1, 2).copy())
    return images, torch.from_numpy(ds.targets[:7].copy()), ds.classes


def _mixer(seed: int) -> MixupCutmix:
    return MixupCutmix(
        10, mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_mixing_grid_tiles_and_labels(tmp_path, digit_batch, dtype):
    images, targets, names = digit_batch
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.5, 0.5)
    batch = images
    if dtype == torch.float32:
        batch = (images.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    before = batch.clone()
    grid = preview_mixing(batch, targets, _mixer(5), tmp_path / "m.png", names, cols=4, mean=mean, std=std)
    torch.testing.assert_close(batch, before, rtol=0, atol=0)  # the caller's batch is not mutated
    assert grid.scale == 8  # 16-pixel digits enlarged to min_tile=128
    assert _read_png(tmp_path / "m.png").shape == _expected_shape(7, 4, 128, 128, 2)

    mixed, soft = _mixer(5)(images, targets)  # the same draws, on the uint8 batch
    top = torch.topk(soft, 2, dim=1)
    for k in range(7):
        expected = _enlarge(mixed[k].permute(1, 2, 0).numpy(), 8).astype(int)
        # uint8 batches are mixed in integers; float ones are rounded once, when shown: at most one grey level apart
        assert np.abs(_tile(grid, k).astype(int) - expected).max() <= (0 if dtype == torch.uint8 else 1)
        first, *rest = grid.captions[k].split("\n")
        assert first == f"{names[top.indices[k, 0]]} {top.values[k, 0]:.2f}"
        if top.values[k, 1] > 0.005:
            assert rest == [f"{names[top.indices[k, 1]]} {top.values[k, 1]:.2f}"]
    assert grid.captions[3] == f"{names[targets[3]]} 1.00\n"  # odd batch: the middle element stays unmixed


def test_mixing_preview_rejects_bad_input(tmp_path, digit_batch):
    images, targets, names = digit_batch
    with pytest.raises(ValueError, match="class_names"):
        preview_mixing(images, targets, _mixer(0), tmp_path / "m.png", names[:3])
    with pytest.raises(ValueError, match="images"):
        preview_mixing(images[0], targets, _mixer(0), tmp_path / "m.png", names)


# ------------------------------------------------------------------------------------------------------ CLI
def _cli(argv: list[str]) -> int:
    from timm_recipes.cli import main

    return main(argv)


def test_cli_pipeline_preview(tmp_path, capsys):
    out = tmp_path / "preview.png"
    assert _cli(["preview", "--pipeline", "rrc", "--cutout", "-n", "3", "--size", "64", "--out", str(out)]) == 0
    assert "4 tiles" in capsys.readouterr().out
    png = _read_png(out)
    assert png.shape == _expected_shape(4, 2, 128, 128, 1)  # 64-pixel crops enlarged 2× to min_tile=128
    photo = load_sample_photos()[0][1]
    fitted = cv2.resize(photo, (64, 43), interpolation=cv2.INTER_AREA)  # 640×427 fitted into 64×64
    y0 = PAD + (128 - 86) // 2
    np.testing.assert_array_equal(png[y0 : y0 + 86, PAD : PAD + 128], _enlarge(fitted, 2))

    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), DigitsDataset("val", size=40).image(0))
    out = tmp_path / "eval.png"
    argv = ["preview", "--pipeline", "eval", "--image", str(image), "-n", "1", "--size", "40", "--crop-pct", "1"]
    assert _cli([*argv, "--out", str(out)]) == 0
    png = _read_png(out)
    tile = 40 * 4  # ceil(128 / 40) = 4
    assert png.shape == _expected_shape(2, 2, tile, tile, 1)
    # crop_pct=1 at the image's own size: the eval draw is the image itself
    np.testing.assert_array_equal(png[PAD : PAD + tile, PAD : PAD + tile], png[PAD : PAD + tile, 2 * PAD + tile : -PAD])


def test_cli_mix_preview(tmp_path, capsys):
    out = tmp_path / "mix.png"
    assert _cli(["preview", "--mix", "--batch", "5", "--digit-size", "32", "--cols", "5", "--out", str(out)]) == 0
    assert _read_png(out).shape == _expected_shape(5, 5, 128, 128, 2)
    out = tmp_path / "photos.png"
    assert _cli(["preview", "--mix", "--source", "photos", "--batch", "2", "--out", str(out)]) == 0
    assert _read_png(out).shape == _expected_shape(2, 2, 224, 224, 2)
    capsys.readouterr()
    assert _cli(["preview", "--mix", "--image", str(out)]) == 2
    assert "--image" in capsys.readouterr().err
    assert _cli(["preview", "--image", str(tmp_path / "missing.jpg")]) == 2
    assert "missing.jpg" in capsys.readouterr().err
