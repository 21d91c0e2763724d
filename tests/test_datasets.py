"""Decoding, image folders, the built-in digits, and the seeded loader (timm_recipes/data/datasets.py)."""

from __future__ import annotations

import io
import logging
import random
import re
import shutil

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, get_worker_info
from torchvision.datasets import ImageFolder

from timm_recipes.data.datasets import (
    CorruptImageError,
    DigitsDataset,
    ImageFolderDataset,
    create_loader,
    decode_image,
    digits_split_indices,
    load_sample_photos,
    sample_jpeg_bytes,
    sample_photo_paths,
)


def _pil_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# ----------------------------------------------------------------------------------------------- decoding
def test_decode_real_jpeg_matches_pil_and_sklearn():
    reference = dict(zip(["china.jpg", "flower.jpg"], load_sample_images().images, strict=True))
    photos = load_sample_photos()
    assert [name for name, _ in photos] == ["china.jpg", "flower.jpg"]
    for name, image in photos:
        assert image.dtype == np.uint8 and image.shape == (427, 640, 3) and image.flags.c_contiguous
        # Same libjpeg family decodes almost identically; channel order must be RGB, not BGR.
        diff = np.abs(image.astype(int) - reference[name].astype(int))
        assert diff.mean() < 1.0, name
        swapped = np.abs(image[..., ::-1].astype(int) - reference[name].astype(int)).mean()
        assert swapped > 10 * max(diff.mean(), 0.1)


def test_decode_path_and_bytes_agree():
    path = sample_photo_paths()[1]
    data = path.read_bytes()
    from_path = decode_image(path)
    np.testing.assert_array_equal(decode_image(str(path)), from_path)
    np.testing.assert_array_equal(decode_image(data), from_path)
    np.testing.assert_array_equal(decode_image(np.frombuffer(data, np.uint8)), from_path)


def test_decode_grey_rgba_palette_16bit(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (9, 7, 1), dtype=np.uint8)

    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "grey.png"), np.repeat(grey[..., None], 3, axis=2))

    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "rgba.png"), rgb)  # alpha dropped, like PIL's convert

    Image.fromarray(rgb).quantize(16).save(tmp_path / "palette.png")
    palette_ref = _pil_rgb((tmp_path / "palette.png").read_bytes())
    np.testing.assert_array_equal(decode_image(tmp_path / "palette.png"), palette_ref)

    Image.fromarray(grey, "L").save(tmp_path / "grey.jpg", quality=95)
    out = decode_image(tmp_path / "grey.jpg")
    assert out.shape == (9, 7, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert np.abs(out.astype(int) - _pil_rgb((tmp_path / "grey.jpg").read_bytes())).max() <= 1

    deep = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    assert cv2.imwrite(str(tmp_path / "deep.png"), deep)
    out = decode_image(tmp_path / "deep.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.repeat((deep >> 8).astype(np.uint8)[..., None], 3, axis=2))


def test_decode_corrupt_files_name_the_file(tmp_path):
    good = sample_photo_paths()[0].read_bytes()
    cases = {
        "garbage.jpg": b"this is not an image at all",
        "truncated.jpg": good[: len(good) * 3 // 5],
        "empty.png": b"",
        "cut.png": cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))[1].tobytes()[:40],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CorruptImageError, match=re.escape(name)) as info:
            decode_image(tmp_path / name)
        assert info.value.path == str(tmp_path / name)
        assert isinstance(info.value, ValueError)
    with pytest.raises(CorruptImageError, match=re.escape("missing.jpg")):
        decode_image(tmp_path / "missing.jpg")
    with pytest.raises(CorruptImageError, match="my-upload"):
        decode_image(b"\x00\x01", name="my-upload")
    with pytest.raises(TypeError, match="path_or_bytes"):
        decode_image(12)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ image folders
@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    return DigitsDataset.export_folder(tmp_path_factory.mktemp("digits"), size=16, splits=("train",), per_class=3)


def test_folder_layout_matches_torchvision(digits_folder):
    root = digits_folder / "train"
    ds = ImageFolderDataset(root)
    ref = ImageFolder(str(root))
    assert ds.classes == ref.classes == [str(d) for d in range(10)]
    assert ds.class_to_idx == ref.class_to_idx
    assert ds.samples == ref.samples
    assert ds.targets == ref.targets
    assert len(ds) == 30


def test_folder_images_and_labels_are_the_digits(digits_folder):
    ds = ImageFolderDataset(digits_folder / "train")
    digits = DigitsDataset("train", size=16)
    position = {int(idx): i for i, idx in enumerate(digits.indices)}
    true_labels = load_digits().target
    for i, (path, target) in enumerate(ds.samples):
        sk_index = int(path.rsplit("/", 1)[-1].split(".")[0])
        assert target == true_labels[sk_index]
        image, label = ds[i]
        assert label == target
        np.testing.assert_array_equal(image, digits.image(position[sk_index]))  # PNG is lossless


def test_folder_of_photos_with_transform_grey_and_rgba(tmp_path):
    china, flower = sample_photo_paths()
    (tmp_path / "china").mkdir()
    (tmp_path / "flower" / "nested").mkdir(parents=True)
    (tmp_path / ".cache").mkdir()  # hidden: not a class
    shutil.copy(china, tmp_path / "china" / "a.JPG")
    shutil.copy(flower, tmp_path / "flower" / "b.jpg")
    rgb = decode_image(flower)
    Image.fromarray(rgb).convert("L").save(tmp_path / "flower" / "nested" / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "flower" / "rgba.png")
    (tmp_path / "flower" / "notes.txt").write_text("not an image")

    ds = ImageFolderDataset(tmp_path, transform=A.Compose([A.CenterCrop(100, 120)]))
    assert ds.classes == ["china", "flower"]
    assert [(p.rsplit("/", 1)[-1], t) for p, t in ds.samples] == [
        ("a.JPG", 0),
        ("b.jpg", 1),
        ("grey.png", 1),
        ("rgba.png", 1),
    ]
    images = [ds[i][0] for i in range(len(ds))]
    assert all(im.shape == (100, 120, 3) and im.dtype == np.uint8 for im in images)
    np.testing.assert_array_equal(images[2][..., 0], images[2][..., 1])  # grey → three equal channels
    np.testing.assert_array_equal(images[3], images[1])  # RGBA of the same pixels → the same RGB
    with pytest.raises(FileNotFoundError, match="china"):  # no .png there
        ImageFolderDataset(tmp_path, extensions=("png",))
    shutil.rmtree(tmp_path / "china")
    assert len(ImageFolderDataset(tmp_path, extensions=("PNG",))) == 2


def test_folder_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no class folders"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    shutil.copy(sample_photo_paths()[0], tmp_path / "cat" / "x.jpg")
    with pytest.raises(FileNotFoundError, match="dog"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="extensions"):
        ImageFolderDataset(tmp_path, extensions=())


@pytest.fixture
def folder_with_corrupt(digits_folder, tmp_path):
    root = tmp_path / "train"
    shutil.copytree(digits_folder / "train", root)
    bad = sorted((root / "3").iterdir())[1]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root, str(bad)


def test_corrupt_file_raises_with_its_name(folder_with_corrupt):
    root, bad = folder_with_corrupt
    ds = ImageFolderDataset(root)
    index = [p for p, _ in ds.samples].index(bad)
    ds[index - 1]  # neighbours are fine
    with pytest.raises(CorruptImageError, match=re.escape(bad.rsplit("/", 1)[-1])) as info:
        ds[index]
    assert info.value.path == bad


def test_skip_corrupt_substitutes_next_and_counts(folder_with_corrupt):
    root, bad = folder_with_corrupt
    ds = ImageFolderDataset(root, skip_corrupt=True)
    index = [p for p, _ in ds.samples].index(bad)
    (image, target), skipped = ds.fetch(index)
    assert skipped == [bad]
    expected_image, expected_target = ds[index + 1]
    np.testing.assert_array_equal(image, expected_image)
    assert target == expected_target
    assert ds.corrupt_count == 1


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_reports_skipped_files_at_epoch_end(folder_with_corrupt, caplog, num_workers):
    root, bad = folder_with_corrupt
    ds = ImageFolderDataset(root, skip_corrupt=True)
    loader = create_loader(ds, batch_size=8, shuffle=True, num_workers=num_workers)
    with caplog.at_level(logging.WARNING, logger="timm_recipes.data.datasets"):
        batches = list(loader)
    assert sum(len(targets) for _, targets in batches) == len(ds)  # batches keep their size
    assert loader.epoch_corrupt_files == [bad]
    assert ds.corrupt_count == 1  # reached the main process even from worker processes
    messages = [r.getMessage() for r in caplog.records]
    assert any("epoch 0: skipped 1 corrupt images" in m and bad in m for m in messages)


# ------------------------------------------------------------------------------------------------- digits
def _half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def test_digits_splits_sizes_stratified_disjoint_deterministic():
    true = load_digits().target
    counts = np.bincount(true)
    splits = {s: digits_split_indices(s) for s in ("train", "val", "test")}
    expected = {
        "test": np.array([_half_up(n * 0.2) for n in counts]),
        "val": np.array([_half_up(n * 0.1) for n in counts]),
    }
    expected["train"] = counts - expected["test"] - expected["val"]
    for split, idx in splits.items():
        np.testing.assert_array_equal(np.bincount(true[idx], minlength=10), expected[split])
        ds = DigitsDataset(split)
        assert len(ds) == expected[split].sum()
        np.testing.assert_array_equal(ds.indices, idx)
        np.testing.assert_array_equal(ds.targets, true[idx])
    everything = np.concatenate(list(splits.values()))
    assert len(everything) == len(true) == len(np.unique(everything))  # disjoint and complete
    np.testing.assert_array_equal(DigitsDataset("val").indices, splits["val"])  # deterministic
    assert not np.array_equal(digits_split_indices("val", seed=1), splits["val"])
    alt = digits_split_indices("test", val_fraction=0.2, test_fraction=0.3)
    assert len(alt) == sum(_half_up(n * 0.3) for n in counts)


def test_digits_pixels_against_sklearn_and_torch():
    sk = load_digits()
    ds8 = DigitsDataset("test", size=8)
    assert ds8.classes == DigitsDataset.classes == [str(d) for d in range(10)]
    for i in (0, 5, 100):
        image, label = ds8[i]
        expected = np.floor(sk.images[ds8.indices[i]] * 255 / 16 + 0.5).astype(np.uint8)
        assert image.shape == (8, 8, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, np.repeat(expected[..., None], 3, axis=2))
        assert label == sk.target[ds8.indices[i]]
    ds32 = DigitsDataset("test", size=32)
    base = torch.from_numpy(np.stack([ds8.image(i)[..., 0] for i in range(20)])).float()[:, None]
    reference = F.interpolate(base, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    ours = torch.from_numpy(np.stack([ds32.image(i)[..., 0] for i in range(20)])).float()
    assert (ours - reference).abs().max() <= 1.0  # same bilinear sampling, uint8 rounding only


def test_digits_transform_and_export(tmp_path):
    ds = DigitsDataset("val", size=24, transform=A.Compose([A.CenterCrop(16, 16)]))
    image, _ = ds[3]
    assert image.shape == (16, 16, 3)
    root = DigitsDataset.export_folder(tmp_path, size=12, splits=("val",), ext=".jpg", per_class=2)
    files = sorted((root / "val").rglob("*.jpg"))
    assert len(files) == 20 and decode_image(files[0]).shape == (12, 12, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "holdout"}, "split"),
        ({"size": 0}, "size"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction"),
        ({"seed": -1}, "seed"),
    ],
)
def test_digits_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsDataset(**kwargs)


def test_sample_jpeg_bytes():
    blobs = sample_jpeg_bytes(size=(500, 375), quality=90)
    assert len(blobs) == 2
    for blob in blobs:
        assert blob[:2] == b"\xff\xd8"
        assert decode_image(blob).shape == (375, 500, 3)
    with pytest.raises(ValueError, match="quality"):
        sample_jpeg_bytes(quality=0)


# ------------------------------------------------------------------------------------------------ loading
_GRID = np.arange(256, dtype=np.uint8).reshape(16, 16)


class _SameImage(Dataset):
    """Every index is the same 16×16 image whose pixel values encode their position; the target is the worker."""

    def __init__(self, n: int, transform: A.Compose) -> None:
        self.n, self.transform = n, transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[int, int]:
        crop = self.transform(image=np.repeat(_GRID[..., None], 3, axis=2))["image"]
        info = get_worker_info()
        return int(crop[0, 0, 0]), -1 if info is None else info.id  # top-left pixel = crop position


def _crop_transform() -> A.Compose:
    return A.Compose([A.RandomCrop(4, 4)])  # 13 × 13 = 169 equally likely positions


def _draws(loader) -> tuple[list[int], list[int]]:
    crops, workers = [], []
    for crop, worker in loader:
        crops += crop.tolist()
        workers += worker.tolist()
    return crops, workers


def test_naive_loader_repeats_augmentations_across_workers_and_epochs():
    naive = DataLoader(_SameImage(8, _crop_transform()), batch_size=2, num_workers=2)
    epoch0, workers = _draws(naive)
    epoch1, _ = _draws(naive)
    assert workers == [0, 0, 1, 1, 0, 0, 1, 1]
    # Both workers inherit the same generator state: worker 1 replays worker 0's draws, and every epoch replays.
    assert epoch0[0:2] == epoch0[2:4] and epoch0[4:6] == epoch0[6:8]
    assert epoch0 == epoch1


def test_seeded_loader_differs_across_workers_and_epochs_and_reproduces():
    ds = _SameImage(8, _crop_transform())
    loader = create_loader(ds, batch_size=2, shuffle=False, num_workers=2, seed=7)
    epoch0, workers = _draws(loader)
    assert workers == [0, 0, 1, 1, 0, 0, 1, 1]
    assert loader.epoch == 1  # advanced after a complete pass
    epoch1, _ = _draws(loader)
    assert epoch0[0:2] != epoch0[2:4] or epoch0[4:6] != epoch0[6:8]
    assert epoch0 != epoch1
    loader.set_epoch(0)
    assert _draws(loader)[0] == epoch0  # the same (seed, epoch) gives the same draws
    assert _draws(create_loader(ds, batch_size=2, shuffle=False, num_workers=0, seed=7))[0] == epoch0
    assert _draws(create_loader(ds, batch_size=2, shuffle=False, seed=8))[0] != epoch0
    persistent = create_loader(ds, batch_size=2, shuffle=False, num_workers=2, seed=7, persistent_workers=True)
    assert [_draws(persistent)[0] for _ in range(2)] == [epoch0, epoch1]


class _GlobalDraws(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[int, int]:
        return int(np.random.randint(1 << 30)), random.randrange(1 << 30)


def test_worker_global_generators_are_seeded_per_worker_and_epoch():
    loader = create_loader(_GlobalDraws(), batch_size=2, shuffle=False, num_workers=2, seed=1)
    epochs = [torch.cat(next(zip(*list(loader), strict=True))).tolist() for _ in range(2)]
    loader.set_epoch(0)
    again = torch.cat(next(zip(*list(loader), strict=True))).tolist()
    assert again == epochs[0] != epochs[1]
    assert len(set(epochs[0])) == 4  # the two workers draw different numbers


def test_seeded_crop_positions_look_uniform():
    # 338 draws over 169 crop positions: no position may be hit far more often than chance allows.
    loader = create_loader(_SameImage(338, _crop_transform()), batch_size=338, shuffle=False)
    crops, _ = _draws(loader)
    counts = np.bincount([(c // 16) * 13 + c % 16 for c in crops], minlength=169)
    assert counts.max() <= 9  # P(max of 169 Poisson(2) counts > 9) < 0.01
    assert len(set(crops)) > 169 * (1 - np.exp(-2)) * 0.85  # expected distinct ≈ 146


def test_shuffle_is_a_fresh_permutation_per_epoch():
    loader = create_loader(DigitsDataset("val", size=8), batch_size=179, shuffle=True, seed=3)
    orders = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        (images, targets) = next(iter(loader))
        orders.append(images[:, 4, 4, 0].tolist() + targets.tolist())
    assert orders[0] == orders[2] and orders[0] != orders[1]
    assert sorted(targets.tolist()) == sorted(DigitsDataset("val").targets.tolist())


def test_distributed_sampler_epochs_and_ranks():
    ds = DigitsDataset("val", size=8)
    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=5)
        loader = create_loader(ds, batch_size=90, shuffle=False, sampler=sampler, epoch=2)
        _, targets = next(iter(loader))
        reference = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=5)
        reference.set_epoch(2)
        np.testing.assert_array_equal(targets.numpy(), ds.targets[list(reference)])
        seen.append(targets)
    assert not torch.equal(seen[0], seen[1])


def test_subset_transform_is_found():
    inner = _SameImage(8, _crop_transform())
    a = _draws(create_loader(Subset(inner, range(8)), batch_size=4, shuffle=False, seed=1))[0]
    b = _draws(create_loader(inner, batch_size=4, shuffle=False, seed=1))[0]
    assert a == b


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 200, "drop_last": True}, "batch_size=200 exceeds"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"seed": -3}, "seed"),
        ({"persistent_workers": True}, "persistent_workers"),
    ],
)
def test_loader_bad_arguments(kwargs, match):
    ds = DigitsDataset("val", size=8)
    args = {"batch_size": 4, "shuffle": True} | kwargs
    with pytest.raises(ValueError, match=match):
        create_loader(ds, **args)
    with pytest.raises(ValueError, match="sampler"):
        create_loader(ds, batch_size=4, shuffle=True, sampler=DistributedSampler(ds, num_replicas=1, rank=0))


class _Flips(_SameImage):
    def __getitem__(self, index: int) -> tuple[int, int]:
        out = self.transform(image=np.repeat(_GRID[..., None], 3, axis=2))["image"]
        return int(out[0, 0, 0]), 0  # 0: none, 15: horizontal, 240: vertical, 255: both


def test_transforms_of_one_pipeline_draw_independently():
    # A.Compose(seed=s) would give both flips identical generators, so they would always agree.
    pipeline = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
    corners, _ = _draws(create_loader(_Flips(200, pipeline), batch_size=200, shuffle=False, seed=0))
    agree = sum(c in (0, 255) for c in corners)
    assert set(corners) == {0, 15, 240, 255}
    assert 70 <= agree <= 130  # Binomial(200, 0.5): 4.2 sd either side, P(outside) < 1e-4
