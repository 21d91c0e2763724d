"""Per-sample reseeding: µs per sample to put a pipeline on the stream of ``(seed, epoch, rank, position)``.

Question: what does ``create_loader`` pay per sample to make augmentations a pure function of the sample's key?
Before: a ``SeedSequence`` of the key, a new ``np.random.default_rng`` and a new ``random.Random`` from its state,
installed into every transform (three generators per sample). Now (``timm_recipes.data.seeding``): one BLAKE2b hash
of the key written as the state of one PCG64 generator, installed once and shared by the transforms and their
``py_random``. Both on the recipe's training pipeline (multi-scale crop, flip, Cutout), one thread.

Run: ``python benchmarks/seeding.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import random

import numpy as np
from _common import markdown_table, summarize, time_interleaved, write_results

from timm_recipes.data import CutoutConfig, multiscale_crop_pipeline
from timm_recipes.data.datasets import _SAMPLES, _Key, _SeededDataset

SAMPLES_PER_CALL = 200
REPEATS, WARMUP = 21, 3
QUICK_REPEATS, QUICK_WARMUP = 3, 1


def before(pipeline, seed: int):
    """The previous per-sample reseeding (three generators per sample), for comparison."""

    def reseed_all() -> None:
        for position in range(SAMPLES_PER_CALL):
            ss = np.random.SeedSequence([seed, _SAMPLES, 0, 0, position])
            np_state, py_state = ss.generate_state(2, np.uint64)
            pipeline.set_random_state(np.random.default_rng(int(np_state)), random.Random(int(py_state)))

    return reseed_all


def after(pipeline, seed: int):
    class Holder:
        transform = pipeline

        def __len__(self) -> int:
            return SAMPLES_PER_CALL

    seeded = _SeededDataset(Holder(), seed)
    keys = [_Key(0, 0, position, position) for position in range(SAMPLES_PER_CALL)]

    def reseed_all() -> None:
        for key in keys:
            seeded.seed_transform(key)

    return reseed_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats, warmup = (QUICK_REPEATS, QUICK_WARMUP) if args.quick else (REPEATS, WARMUP)
    make = lambda: multiscale_crop_pipeline(cutout=CutoutConfig())  # noqa: E731
    fns = {"before: SeedSequence + default_rng + Random": before(make(), 0), "now: keyed PCG64 state": after(make(), 0)}
    times = time_interleaved(fns, repeats=repeats, warmup=warmup)
    stats = {name: summarize([t / SAMPLES_PER_CALL for t in ts]) for name, ts in times.items()}
    ref = stats["before: SeedSequence + default_rng + Random"]["median"]
    rows = [
        [name, s["median"] * 1e6, f"{s['q1'] * 1e6:.3g}–{s['q3'] * 1e6:.3g}", ref / s["median"]]
        for name, s in stats.items()
    ]
    table = markdown_table(["reseeding", "median µs / sample", "IQR µs", "speed-up (×)"], rows)
    notes = (
        f"{SAMPLES_PER_CALL} samples per timed call, {repeats} interleaved rounds after {warmup} warm-up rounds; "
        "the recipe's training pipeline (multi-scale crop + flip + Cutout)."
    )
    results = {name: {k: v * 1e6 if k != "n" else v for k, v in s.items()} for name, s in stats.items()}
    write_results("seeding", results, table, title="Per-sample reseeding", notes=notes)


if __name__ == "__main__":
    main()
