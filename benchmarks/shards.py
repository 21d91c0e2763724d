"""Question: what does reading the training images from WebDataset shards cost over reading them from a folder?

The same JPEG files (cut from the two real sklearn sample photos, ~500×375, quality 80-95, as in
``data_pipeline.py``), once as an image folder (``root/train/<class>/<file>.jpg``) and once converted by
``write_shards`` into tar shards with an ``_info.json``. Both go through the same recipe-built training loader
(``build_datasets`` → ``create_train_loader``: multi-scale crop S in [256, 480] → 224, flip, Cutout, normalise; batch
32, ``drop_last``), for ``data.num_workers`` = 0 (in the main process), 1 and 2 worker processes; one full epoch per
call, interleaved rounds, medians. Each epoch of the WDS loader also reads through its default 1,000-sample shuffle
buffer (of encoded bytes).

Reported: wall clock and CPU time (this process plus its finished worker processes, from ``getrusage``), as the
ratio shards / folder. Target: at most 1.05 (shards cost at most 5 % more), for one worker and several.

Run: ``python benchmarks/shards.py`` (a few minutes on 2 cores) or ``--quick``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cv2
import torch
from _common import markdown_table, summarize, write_results
from data_pipeline import make_jpegs

# ----------------------------------------------------------------------------------------------- settings
NUM_CLASSES, PER_CLASS = 3, 96  # 288 training images
SAMPLES_PER_SHARD = 32  # 9 shards
BATCH = 32
WORKERS = (0, 1, 2)
REPEATS, WARMUP = 11, 2
QUICK_REPEATS, QUICK_WARMUP = 3, 1
TARGET = 1.05


def make_data(base: Path) -> tuple[Path, Path]:
    from timm_recipes.data.sources.writing import write_shards

    files = make_jpegs(NUM_CLASSES * PER_CLASS, seed=1)
    folder = base / "folder"
    for i, data in enumerate(files):
        for split in ("train", "val"):
            if split == "val" and i % 8:
                continue
            path = folder / split / f"class{i % NUM_CLASSES}" / f"{i:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    shards = base / "shards"
    write_shards(folder, shards, name="bench", samples_per_shard=SAMPLES_PER_SHARD, seed=0, progress=False)
    return folder, shards


def make_loader(dataset: str, root: Path, workers: int):
    from timm_recipes.config import apply_overrides
    from timm_recipes.recipes import get_preset
    from timm_recipes.train.builders import build_datasets, create_train_loader
    from timm_recipes.train.distributed import Distributed

    recipe = apply_overrides(
        get_preset("demo"),
        {
            "data.dataset": dataset, "data.root": str(root), "data.batch_size": BATCH, "data.num_workers": workers,
            "model.num_classes": NUM_CLASSES, "aug.train_pipeline": "multiscale", "aug.train_size": 224,
            "aug.scale_range": [256, 480], "aug.cutout_p": 0.5, "mix.mixup_alpha": 0.0, "mix.cutmix_alpha": 0.0,
        },
    )  # fmt: skip
    data = build_datasets(recipe)
    return create_train_loader(recipe, data, Distributed(), torch.device("cpu"), None)


def cpu_seconds() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def measure_reading(folder: Path, shards: Path, *, rounds: int) -> dict[str, float]:
    """CPU ms per image of only getting the encoded bytes: a file read, or webdataset's tar reader (same process)."""
    from timm_recipes.data.datasets import ImageFolderDataset
    from timm_recipes.data.sources.sharding import train_plan
    from timm_recipes.data.sources.wds import WdsSource, resolve_shards

    source = WdsSource(resolve_shards(str(shards), "train"), [str(c) for c in range(NUM_CLASSES)])
    s = source.split
    plan = train_plan(num_shards=len(s.urls), num_samples=s.num_samples, lengths=s.lengths, seed=0, epoch=0, rank=0,
                      world_size=1, num_workers=1, batch_size=1)[0]  # fmt: skip
    paths = [p for p, _ in ImageFolderDataset(folder / "train").samples]

    def files() -> int:
        total = 0
        for path in paths:
            with open(path, "rb") as f:
                total += len(f.read())
        return total

    def tars() -> int:
        return sum(len(item[2]) for item in source._read_once(plan, []))

    times: dict[str, list[float]] = {"folder": [], "wds": []}
    for _ in range(rounds):
        for name, fn in (("folder", files), ("wds", tars)):
            c0 = time.process_time()
            fn()
            times[name].append((time.process_time() - c0) / len(paths) * 1e3)
    return {name: summarize(t)["median"] for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    repeats, warmup = (QUICK_REPEATS, QUICK_WARMUP) if args.quick else (REPEATS, WARMUP)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder, shards = make_data(Path(tmp))
        loaders = {(src, w): make_loader(src, root, w) for w in WORKERS for src, root in (("folder", folder),
                                                                                         ("wds", shards))}  # fmt: skip
        wall: dict = {key: [] for key in loaders}
        cpu: dict = {key: [] for key in loaders}
        for round_ in range(warmup + repeats):
            for key, loader in loaders.items():
                loader.set_epoch(round_)
                c0, t0 = cpu_seconds(), time.perf_counter()
                images = sum(int(batch[0].shape[0]) for batch in loader)
                t1, c1 = time.perf_counter(), cpu_seconds()
                assert images == (NUM_CLASSES * PER_CLASS // BATCH) * BATCH
                if round_ >= warmup:
                    wall[key].append(t1 - t0)
                    cpu[key].append(c1 - c0)
        read = measure_reading(folder, shards, rounds=warmup + repeats)
    results, rows = {"reading_only_ms_per_image": read}, []
    n_images = (NUM_CLASSES * PER_CLASS // BATCH) * BATCH
    for w in WORKERS:
        f_wall, s_wall = summarize(wall[("folder", w)]), summarize(wall[("wds", w)])
        f_cpu, s_cpu = summarize(cpu[("folder", w)]), summarize(cpu[("wds", w)])
        ratio_wall, ratio_cpu = s_wall["median"] / f_wall["median"], s_cpu["median"] / f_cpu["median"]
        # The least disturbed round of each (a shared machine only ever adds time): a second, robust estimate.
        ratio_min = min(cpu[("wds", w)]) / min(cpu[("folder", w)])
        results[f"workers_{w}"] = {
            "folder_wall_s": f_wall, "wds_wall_s": s_wall, "folder_cpu_s": f_cpu, "wds_cpu_s": s_cpu,
            "ratio_wall": ratio_wall, "ratio_cpu": ratio_cpu, "ratio_cpu_min": ratio_min, "target": TARGET,
        }  # fmt: skip
        rows.append([w, n_images / f_wall["median"], n_images / s_wall["median"], ratio_wall, ratio_cpu, ratio_min,
                     TARGET, "yes" if ratio_cpu <= TARGET else "no"])  # fmt: skip
    table = markdown_table(
        ["workers", "folder images/s", "shards images/s", "shards/folder (wall, median)", "(CPU, median)",
         "(CPU, best round)", "target", "met (CPU median)"], rows)  # fmt: skip
    per_image = 1e3 * summarize(cpu[("folder", 0)])["median"] / n_images
    extra = read["wds"] - read["folder"]
    table += (
        f"\n\nReading only (same process, CPU): {read['folder']:.3f} ms per image from files, {read['wds']:.3f} ms "
        f"through webdataset's tar reader: {extra:.3f} ms more, {100 * extra / per_image:.1f} % of the folder "
        f"pipeline's {per_image:.2f} ms CPU per image (0 workers)."
    )
    results["reading_only_overhead_fraction"] = extra / per_image
    load = os.getloadavg()[0]
    notes = (
        f"{n_images} training images per epoch ({NUM_CLASSES} classes x {PER_CLASS} JPEGs ~500x375; "
        f"{NUM_CLASSES * PER_CLASS // SAMPLES_PER_SHARD} shards of {SAMPLES_PER_SHARD}); one epoch per call, "
        f"{repeats} interleaved rounds after {warmup} warm-up; batch {BATCH}, multi-scale crop 224 + Cutout; one "
        "thread per process. CPU = this process plus its worker processes. 1-minute load average at the end "
        f"{load:.1f} on {os.cpu_count()} cores (a shared machine stretches the wall clock; the CPU ratio is the one "
        "the target is judged on). Command: `python benchmarks/shards.py`."
    )
    write_results("shards", results, table, title="WebDataset shards vs image folder, same pipeline", notes=notes)


if __name__ == "__main__":
    main()
