"""Per-sample random streams: the pipelines in a plain DataLoader (distinct draws per worker and epoch), create_loader's
exact reproducibility with the cheap per-sample reseeding, and the keyed streams themselves."""

from __future__ import annotations

import copy
import pickle
import random

import albumentations as A
import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader, Dataset

from timm_recipes.data import CutoutConfig, DigitsDataset, create_loader, multiscale_crop_pipeline
from timm_recipes.data.seeding import NumpyRandom, keyed_generator, reseed, stream_state
from timm_recipes.data.transforms import RecipeCompose

# A 260×260 image whose pixel (y, x) holds (y, x, 0): the top-left pixel of a crop names its position.
_ROWS, _COLS = np.meshgrid(np.arange(250, dtype=np.uint8), np.arange(250, dtype=np.uint8), indexing="ij")
_POSITIONS = np.stack([_ROWS, _COLS, np.zeros_like(_ROWS)], axis=2)


class _SameImage(Dataset):
    """Every index is the same image: only the augmentation differs between samples."""

    def __init__(self, n: int, transform: A.Compose) -> None:
        self.n, self.transform = n, transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[tuple[int, int], int]:
        crop = self.transform(image=_POSITIONS)["image"]
        info = torch.utils.data.get_worker_info()
        return (int(crop[0, 0, 0]), int(crop[1, 0, 0])), -1 if info is None else info.id


def _crop_pipeline(seed: int | None) -> RecipeCompose:
    # 247² = 61,009 equally likely positions; RecipeCompose is what every pipeline builder returns.
    return RecipeCompose([A.RandomCrop(4, 4), A.ToTensorV2()], seed=seed)


def _epochs(loader: DataLoader, epochs: int = 2) -> list[list[tuple[tuple[int, int], int]]]:
    out = []
    for _ in range(epochs):
        draws = []
        for (ys, xs), workers in loader:
            draws += [((int(y), int(x)), int(w)) for y, x, w in zip(ys, xs, workers, strict=True)]
        out.append(draws)
    return out


@pytest.mark.parametrize("seed", [None, 3])
def test_pipeline_in_a_plain_dataloader_never_repeats_across_workers_or_epochs(seed: int | None) -> None:
    loader = DataLoader(_SameImage(8, _crop_pipeline(seed)), batch_size=2, num_workers=2)
    epochs = _epochs(loader)
    positions = [pos for draws in epochs for pos, _ in draws]
    assert [w for _, w in epochs[0]] == [0, 0, 1, 1, 0, 0, 1, 1]
    # 16 draws over 61,009 positions: a repeat has probability < 0.2 %; before the fix, 12 of the 16 were repeats
    # (worker 1 replayed worker 0, epoch 1 replayed epoch 0).
    assert len(set(positions)) == 16


def test_seeded_pipeline_in_a_seeded_dataloader_reproduces() -> None:
    def run() -> list:
        loader = DataLoader(
            _SameImage(8, _crop_pipeline(5)), batch_size=2, num_workers=2, generator=torch.Generator().manual_seed(0)
        )
        return _epochs(loader)

    first = run()
    assert first == run()  # (pipeline seed, DataLoader seed) fix every draw of every worker and epoch
    assert first[0] != first[1]


def test_persistent_workers_continue_their_stream() -> None:
    loader = DataLoader(_SameImage(8, _crop_pipeline(None)), batch_size=2, num_workers=2, persistent_workers=True)
    epochs = _epochs(loader)
    assert len({pos for draws in epochs for pos, _ in draws}) == 16


def test_main_process_pipeline_is_unchanged_by_the_worker_rule() -> None:
    # Outside a worker a seeded pipeline is exactly albumentations' seeded stream, as before.
    a, b = _crop_pipeline(11), _crop_pipeline(11)
    assert [a(image=_POSITIONS)["image"][:2, 0, 0].tolist() for _ in range(5)] == [
        b(image=_POSITIONS)["image"][:2, 0, 0].tolist() for _ in range(5)
    ]


def _digits_pipeline() -> A.Compose:
    cutout = CutoutConfig(p=0.5, size=0.25)
    return multiscale_crop_pipeline(crop_size=16, scale_range=(18, 32), cutout=cutout, normalize=False)


def _batches(loader) -> list[torch.Tensor]:
    return [images.clone() for images, _ in loader]


def test_create_loader_reproduces_batches_for_the_same_seed_and_epoch() -> None:
    ds = DigitsDataset("val", size=32, transform=_digits_pipeline())
    loader = create_loader(ds, batch_size=16, shuffle=True, num_workers=2, seed=4)
    epoch0, epoch1 = _batches(loader), _batches(loader)
    loader.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(epoch0, _batches(loader), strict=True))
    # independent of the number of workers, and of the pipeline's own seed or earlier use
    ds.transform.set_random_seed(123)
    single = create_loader(ds, batch_size=16, shuffle=True, num_workers=0, seed=4, epoch=1)
    assert all(torch.equal(a, b) for a, b in zip(epoch1, _batches(single), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(epoch0, epoch1, strict=True))
    other = create_loader(ds, batch_size=16, shuffle=True, seed=5)
    assert not all(torch.equal(a, b) for a, b in zip(epoch0, _batches(other), strict=True))


def test_create_loader_cutout_probability_comes_from_the_keyed_stream() -> None:
    # albumentations decides p with py_random: here a NumpyRandom on the per-sample stream. Over 1,000 samples the
    # Cutout rate must be 0.5 within a binomial test, and equal per position across two runs.
    size = 24
    image = np.full((size, size, 3), 200, np.uint8)
    pipeline = RecipeCompose([A.NoOp(), CutoutConfig(p=0.5, size=4).build((0.0, 0.0, 0.0))], seed=0)

    class Flat(Dataset):
        transform = pipeline

        def __len__(self) -> int:
            return 1000

        def __getitem__(self, index: int) -> int:
            return int((self.transform(image=image)["image"] == 0).any())

    erased = torch.cat([b for b in create_loader(Flat(), batch_size=250, shuffle=False, seed=9)])
    again = torch.cat([b for b in create_loader(Flat(), batch_size=250, shuffle=False, seed=9)])
    assert torch.equal(erased, again)
    assert stats.binomtest(int(erased.sum()), 1000, 0.5).pvalue > 1e-3


# ------------------------------------------------------------------------------------------------- keyed streams
def test_keyed_streams_are_reproducible_and_distinct() -> None:
    g = keyed_generator(1, 2, 3)
    first = g.random(4)
    assert np.array_equal(reseed(g, 1, 2, 3).random(4), first)
    assert np.array_equal(keyed_generator(1, 2, 3).random(4), first)
    seen = {
        tuple(keyed_generator(0, 3, e, r, p).integers(0, 2**62, 2))
        for e in range(4)
        for r in range(4)
        for p in range(8)
    }
    assert len(seen) == 128  # distinct keys, distinct streams
    assert stream_state(1, 2) != stream_state(2, 1) and stream_state(1, 2) != stream_state(1, 2, 0)
    assert stream_state(-1)[0] == stream_state(2**64 - 1)[0]  # negatives wrap mod 2**64
    assert all(inc % 2 == 1 for inc in (stream_state(k)[1] for k in range(50)))  # PCG64 needs an odd increment


def test_numpy_random_draws_from_its_generator() -> None:
    g = keyed_generator(7)
    r = NumpyRandom(g)
    assert isinstance(r, random.Random)
    values = [r.random() for _ in range(3)]
    assert values == list(keyed_generator(7).random(3))
    assert all(0 <= r.getrandbits(k) < 2**k for k in (1, 7, 8, 63, 64, 100)) and r.getrandbits(0) == 0
    ints = [r.randint(0, 9) for _ in range(5000)]
    assert stats.chisquare(np.bincount(ints, minlength=10)).pvalue > 1e-3
    for clone in (pickle.loads(pickle.dumps(r)), copy.deepcopy(r)):
        assert clone.random() == NumpyRandom(copy.deepcopy(g)).random()
    r.seed(5)
    assert r.random() == keyed_generator(5).random()
    with pytest.raises(TypeError, match="generator"):
        NumpyRandom(random.Random(0))
