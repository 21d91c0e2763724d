"""The GPU benchmark: one prepared script (≤ 6 minutes on one GPU) for what only a GPU can measure.

(a) ``recipe_resnet50`` bf16 channels-last training steps/s on synthetic data already on the device;
(b) the same with the full real data path, as a ratio to (a): JPEG folder and WebDataset shards → multi-scale crops +
    Cutout in uint8 → loader with all cores → :class:`~timm_recipes.data.prefetch.DevicePrefetcher` (side-stream copy,
    GPU normalise, channels-last) → Mixup/CutMix on the GPU: the loaders ``fit`` builds, from the recipe;
(c) ``"batch"`` vs ``"row"`` stochastic depth at p_L = 0.5 (training step), next to the FLOP-weighted ideal;
(d) Mixup/CutMix ms per batch, ours vs timm (targets as the loader hands them to ours: pinned on the host);
(e) ``fit`` vs a hand-written loop (``benchmarks/trainer_overhead.py``'s measurement).

On a machine without CUDA it runs every part at tiny sizes on the CPU (to prove the script works) and says so; (a)
and (b) then use float32 (no bf16 autocast speed-up on a CPU). The shards are written by the package's
``write_shards`` (``jpg`` + ``cls``, timm's keys, an ``_info.json``) and read by its shard source.

Run: ``python benchmarks/gpu.py`` (``--quick`` for fewer repeats). Writes ``results/gpu.json`` and ``results/gpu.md``
(``results/gpu_cpu_smoke.*`` without CUDA).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import markdown_table, summarize, time_interleaved, write_results

import timm_recipes  # noqa: F401  (registers the recipe models)

CUDA = torch.cuda.is_available()
# Settings: (GPU, CPU smoke run)
BATCH = 128 if CUDA else 4
SIZE = 224 if CUDA else 64
STEPS, WARMUP = (60, 15) if CUDA else (3, 1)
NUM_IMAGES = 4096 if CUDA else 16  # files in the JPEG folder and the shards (32 batches: every worker reads)
SHARDS = 64 if CUDA else 2
WORKERS = os.cpu_count() or 1
SD_REPEATS = 20 if CUDA else 2
MIX_REPEATS = 21 if CUDA else 3
SEED = 0


def _device() -> torch.device:
    return torch.device("cuda" if CUDA else "cpu")


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _model(mode: str = "row", drop_path_rate: float = 0.0) -> torch.nn.Module:
    import timm

    model = timm.create_model("recipe_resnet50", drop_path_rate=drop_path_rate, stochastic_depth_mode=mode)
    return model.to(_device()).to(memory_format=torch.channels_last).train()


def _step_fn(model: torch.nn.Module):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if CUDA else torch.autocast("cpu", enabled=False)

    def step(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with amp:
            loss = F.cross_entropy(model(images), targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def _steps_per_s(batches, steps: int, warmup: int) -> float:
    """Train on ``batches`` (an iterator of device batches) for ``warmup + steps`` steps; steps/s of the last."""
    step = _step_fn(_model())
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(*next(it))
    loss.item()
    _sync()
    return steps / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------ (a) synthetic
def synthetic() -> float:
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=g).to(_device()).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (BATCH,), generator=g).to(_device())

    def forever():
        while True:
            yield x, y

    return _steps_per_s(forever(), STEPS, WARMUP)


# ------------------------------------------------------------------------------------------------ (b) real data
def _write_data(root: Path) -> tuple[Path, Path]:
    """A JPEG folder in the ImageNet layout (10 classes, ImageNet-sized photos) and the same files as WebDataset
    shards with an ``_info.json``, written by :func:`~timm_recipes.data.sources.writing.write_shards` (the ``shard``
    command)."""
    from timm_recipes.data.datasets import sample_jpeg_bytes
    from timm_recipes.data.sources.writing import write_shards

    photos = [b for size in ((500, 375), (375, 500), (640, 480)) for b in sample_jpeg_bytes(size)]
    folder = root / "folder"
    val_images = 10 * max(1, NUM_IMAGES // 160)  # every class in val (the loaders need it)
    for i in range(NUM_IMAGES):
        for split in ("train", "val"):
            if split == "val" and i >= val_images:
                continue
            path = folder / split / f"{i % 10:02d}" / f"{i:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(photos[i % len(photos)])
    shards = root / "shards"
    write_shards(folder, shards, name="bench", samples_per_shard=-(-NUM_IMAGES // SHARDS), seed=SEED, progress=False)
    return folder, shards


def _train_loader(dataset: str, root: Path):
    """The trainer's own training loader for ``dataset`` (what ``fit`` builds): the recipe's multi-scale crop +
    Cutout in the workers (uint8 on CUDA), then on CUDA the :class:`~timm_recipes.data.prefetch.DevicePrefetcher`
    (side-stream copy, GPU normalise, channels-last) with Mixup/CutMix (α 0.8 / 1.0) in place on the GPU."""
    from timm_recipes.config import apply_overrides
    from timm_recipes.recipes import get_preset
    from timm_recipes.train.builders import build_datasets, create_mixing, create_train_loader
    from timm_recipes.train.distributed import Distributed

    recipe = apply_overrides(
        get_preset("demo"),
        {
            "data.dataset": dataset, "data.root": str(root), "data.batch_size": BATCH, "data.num_workers": WORKERS,
            "data.persistent_workers": True, "data.pin_memory": CUDA, "model.num_classes": 10,
            "aug.train_pipeline": "multiscale", "aug.train_size": SIZE, "aug.scale_range": [SIZE * 8 // 7,
            SIZE * 15 // 7], "aug.cutout_p": 0.5, "mix.mixup_alpha": 0.8, "mix.cutmix_alpha": 1.0,
            "run.channels_last": True, "run.seed": SEED,
        },
    )  # fmt: skip
    data = build_datasets(recipe)
    collate, mixer = create_mixing(recipe, 1000, _device(), torch.Generator().manual_seed(SEED))  # 1000: the model's
    return create_train_loader(recipe, data, Distributed(), _device(), collate, mixer)


def _epochs(loader):
    while True:  # epochs, for as long as the measurement needs
        yield from loader


def real_data(folder: Path, shards: Path, synthetic_rate: float) -> dict[str, float]:
    out = {}
    for key, dataset, root in (("jpeg_folder", "folder", folder), ("wds_shards", "wds", shards)):
        out[f"{key}_steps_per_s"] = _steps_per_s(_epochs(_train_loader(dataset, root)), STEPS, WARMUP)
        out[f"{key}_over_synthetic"] = out[f"{key}_steps_per_s"] / synthetic_rate
    return out


# ------------------------------------------------------------------------------------------------ (c) stochastic depth
def stochastic_depth() -> dict[str, float]:
    from stochastic_depth import branch_macs

    from timm_recipes.layers import expected_kept_fraction, stochastic_depth_modules

    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=g).to(_device()).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (BATCH,), generator=g).to(_device())
    models = {mode: _model(mode, 0.5) for mode in ("batch", "row")}
    models["row"].load_state_dict(models["batch"].state_dict())
    steps = {mode: _step_fn(m) for mode, m in models.items()}
    times = time_interleaved(
        {mode: (lambda s=s: s(x, y)) for mode, s in steps.items()}, repeats=SD_REPEATS, warmup=3, sync=_sync
    )
    probe = models["batch"]
    block_macs, total = branch_macs(probe, x[:2])
    probe.train()
    kept = expected_kept_fraction([m.survival_prob for m in stochastic_depth_modules(probe)], block_macs)
    share = sum(block_macs) / total
    med = {mode: statistics.median(t) for mode, t in times.items()}
    return {
        "batch_ms": med["batch"] * 1e3,
        "row_ms": med["row"] * 1e3,
        "batch_speedup_over_row": med["row"] / med["batch"],
        "flop_weighted_ideal_speedup": 1.0 / (1.0 - share * (1.0 - kept)),
    }


# ------------------------------------------------------------------------------------------------ (d) mixing
def mixing() -> dict[str, dict[str, float]]:
    from timm.data import Mixup

    from timm_recipes.data import MixupCutmix

    dev = _device()
    g = torch.Generator().manual_seed(SEED)
    x = torch.rand(BATCH, 3, SIZE, SIZE, generator=g).to(dev)
    t_host = torch.randint(0, 1000, (BATCH,), generator=g)
    t_host = t_host.pin_memory() if CUDA else t_host
    t_dev = t_host.to(dev)
    np.random.seed(SEED)
    out = {}
    for name, (ma, ca) in {"mixup": (1.0, 0.0), "cutmix": (0.0, 1.0), "switch": (1.0, 1.0)}.items():
        ours = MixupCutmix(1000, ma, ca, generator=torch.Generator().manual_seed(SEED))
        theirs = Mixup(mixup_alpha=ma, cutmix_alpha=ca, label_smoothing=0.0, num_classes=1000)
        xa, xb, xc = x.clone(), x.clone(), x.clone()
        fns = {
            "timm": lambda m=theirs, xx=xa: m(xx, t_dev),
            "ours (host targets)": lambda m=ours, xx=xb: m(xx, t_host, inplace=True),
            "ours (device targets)": lambda m=ours, xx=xc: m(xx, t_dev, inplace=True),
        }
        times = time_interleaved(fns, repeats=MIX_REPEATS, warmup=3, sync=_sync)
        out[name] = {k: summarize(v)["median"] * 1e3 for k, v in times.items()}
        out[name]["ours_speedup_vs_timm"] = out[name]["timm"] / out[name]["ours (host targets)"]
    return out


# ------------------------------------------------------------------------------------------------ (e) fit overhead
def fit_overhead() -> dict:
    """On the GPU: ``fit`` against a hand-written loop on the demo recipe (whole epochs, data loading included).
    The CPU smoke run measures only the engine's step against a bare loop on pre-loaded batches (whole ``fit`` runs
    of the demo recipe take many minutes on a small CPU; ``benchmarks/trainer_overhead.py`` measures them there)."""
    from trainer_overhead import measure_fit_overhead, measure_loop_overhead

    if CUDA:
        return measure_fit_overhead(32, 3, 2, "cuda", min(WORKERS, 8))
    loop = measure_loop_overhead(16, 5, 2, "cpu")
    return {"fit_over_hand": loop["engine_over_bare"], "overhead_pct": 100.0 * (loop["engine_over_bare"] - 1.0),
            "cpu_smoke_engine_vs_bare_loop": loop}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c,d,e")
    args = parser.parse_args()
    global STEPS, WARMUP, SD_REPEATS, MIX_REPEATS
    if args.quick:
        STEPS, WARMUP, SD_REPEATS, MIX_REPEATS = max(3, STEPS // 3), max(1, WARMUP // 3), 3, 5
    skip = set(filter(None, args.skip.split(",")))
    torch.manual_seed(SEED)
    t0 = time.perf_counter()
    results: dict = {"settings": {"batch": BATCH, "size": SIZE, "steps": STEPS, "workers": WORKERS, "cuda": CUDA}}
    rows: list[list[object]] = []

    def progress(part: str) -> None:
        print(f"[gpu.py {time.perf_counter() - t0:5.0f} s] {part}", flush=True)

    progress("(a) synthetic" if CUDA else "no CUDA: CPU smoke run of every part at tiny sizes")
    rate = synthetic() if not ({"a", "b"} <= skip) else float("nan")
    if "a" not in skip:
        results["a_synthetic_steps_per_s"] = rate
        rows.append(["(a) synthetic, on the device", f"{rate:.3g} steps/s", "1"])
    if "b" not in skip:
        progress("(b) real data path")
        with tempfile.TemporaryDirectory() as tmp:
            folder, shards = _write_data(Path(tmp))
            real = real_data(folder, shards, rate)
        results["b_real_data"] = real
        for key, label in (("jpeg_folder", "JPEG folder"), ("wds_shards", "WebDataset shards")):
            rows.append([f"(b) {label} → GPU path", f"{real[f'{key}_steps_per_s']:.3g} steps/s",
                         f"{real[f'{key}_over_synthetic']:.3g}"])  # fmt: skip
    if "c" not in skip:
        progress("(c) stochastic depth")
        sd = stochastic_depth()
        results["c_stochastic_depth"] = sd
        ratio = f"{sd['batch_speedup_over_row']:.3g} (ideal {sd['flop_weighted_ideal_speedup']:.3g})"
        value = f"{sd['batch_ms']:.3g} vs {sd['row_ms']:.3g} ms"
        rows.append(["(c) stochastic depth batch vs row (p_L 0.5)", value, ratio])
    if "d" not in skip:
        progress("(d) Mixup/CutMix")
        mix = mixing()
        results["d_mixing_ms"] = mix
        for name, m in mix.items():
            rows.append([f"(d) {name}: ours (host / device targets) vs timm",
                         f"{m['ours (host targets)']:.3g} / {m['ours (device targets)']:.3g} vs {m['timm']:.3g} ms",
                         f"{m['ours_speedup_vs_timm']:.3g}"])  # fmt: skip
    if "e" not in skip:
        progress("(e) fit vs hand-written loop")
        fo = fit_overhead()
        results["e_fit_vs_hand_loop"] = fo
        what = "(e) fit vs hand-written loop" if CUDA else "(e) CPU smoke: train_one_epoch vs bare loop, pre-loaded"
        rows.append([what, f"{fo['overhead_pct']:.3g} % overhead", f"{fo['fit_over_hand']:.3g}"])
    results["wall_s"] = time.perf_counter() - t0
    table = markdown_table(["measurement", "value", "ratio"], rows)
    where = (
        f"on {torch.cuda.get_device_name(0)}, bf16 autocast, channels-last, batch {BATCH} at {SIZE} px"
        if CUDA
        else f"CPU smoke run (no CUDA: tiny sizes, float32, batch {BATCH} at {SIZE} px; the figures say nothing "
        "about a GPU; skipped: the GPU-only parts of (a)/(b) (bf16, side stream, pinned copies) and (e)'s whole-epoch "
        "fit runs, replaced by the engine-vs-bare-loop step measurement)"
    )
    notes = (
        f"Measured {where}; {WORKERS} loader workers; {results['wall_s']:.0f} s in all. (a) and (b): steps/s "
        f"over {STEPS} timed steps after {WARMUP} warm-up steps; (b) ratio = (b) / (a) (1 = the data path keeps "
        "up with the GPU); the loaders are the trainer's own (build_datasets + create_mixing + create_train_loader, "
        "persistent workers), on shards written by write_shards. (c) ratio = row / batch step time "
        "(speed-up of batch mode). (d) ratio = timm / ours with host (pinned) targets, the trainer's path; with "
        "device targets ours synchronises once to validate them. (e) trainer_overhead.measure_fit_overhead on a GPU "
        "(ratio = fit / hand-loop images/s), measure_loop_overhead in the CPU smoke run (ratio = engine / bare time)."
    )
    write_results("gpu" if CUDA else "gpu_cpu_smoke", results, table, title="GPU path benchmark", notes=notes)


if __name__ == "__main__":
    main()
