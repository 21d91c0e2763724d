"""What does the trainer cost? ``fit`` against a minimal hand-written loop, and the EMA update against timm's.

Question 1: training images per second of ``timm_recipes.train.fit`` (the demo recipe: EMA every k steps, Mixup/CutMix
(in the loader on the CPU, on the device on a GPU), seeded per-sample augmentation, progress logging, per-iteration
schedule) against a minimal hand-written PyTorch loop over the same model, data, pipeline and batch size (a plain
``DataLoader``; no EMA, no Mixup/CutMix, no logging). Both run in this process, interleaved round by round; the
first epoch of every run is warm-up and not counted; medians over the remaining epochs. ``fit``'s rate is its own
per-epoch training rate (the ``train_images_per_s`` of ``metrics.jsonl``); its end-to-end rate (training images over
the whole call's wall time, which also validates raw and EMA weights every epoch and writes checkpoints) is
reported beside it.

Question 1b: the loop alone. ``train_one_epoch`` (EMA every k steps, progress bar, loss bookkeeping, per-iteration
schedule) against the bare loop over the same pre-loaded batches (no data loading, no Mixup/CutMix), interleaved: what
the trainer's own per-step code costs, apart from the data pipeline.

Question 2: one EMA update of :class:`timm_recipes.train.ema.WeightEma` against a plain ``timm.utils.ModelEmaV3.update``
on the same model (ResNet-18 and ResNet-50), interleaved, medians after warm-up.

    python benchmarks/trainer_overhead.py            # ~3 min on 2 CPU cores
    python benchmarks/trainer_overhead.py --quick    # 16 px images, fewer rounds
    python benchmarks/trainer_overhead.py --device cuda --workers 6
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import markdown_table, summarize, time_interleaved, write_results

# ---------------------------------------------------------------------------------------------------- settings
RECIPE = "demo"
IMAGE_SIZE = 32  # the demo's
EPOCHS_PER_RUN = 3  # the first one is warm-up
ROUNDS = 2
LOOP_STEPS = 20  # pre-loaded batches of 16 px images: small steps, so that per-step costs show
LOOP_REPEATS = 5
EMA_MODELS = ("recipe_resnet18", "recipe_resnet50")
EMA_REPEATS = 15
QUICK = {"IMAGE_SIZE": 16, "EPOCHS_PER_RUN": 2, "ROUNDS": 2, "EMA_REPEATS": 8, "LOOP_REPEATS": 3}


def _recipe(size: int, epochs: int, device: str, workers: int):
    from timm_recipes.config import apply_overrides
    from timm_recipes.recipes import get_preset

    scale = [size, size + size // 4]
    overrides = {
        "data.image_size": size, "aug.train_size": size, "aug.scale_range": scale, "aug.test_size": size,
        "schedule.epochs": epochs, "schedule.warmup_epochs": 1.0, "run.patience": None, "run.progress": False,
        "run.device": device, "data.num_workers": workers,
    }  # fmt: skip
    return apply_overrides(get_preset(RECIPE), overrides)


def hand_loop(recipe, epochs: int) -> list[float]:
    """A minimal loop: same model, data, pipeline, batch, loss, optimizer and schedule; returns images/s per epoch."""
    import torch

    from timm_recipes.train.builders import build_datasets, create_recipe_model
    from timm_recipes.train.distributed import resolve_device
    from timm_recipes.train.losses import create_loss
    from timm_recipes.train.optim import create_optimizer
    from timm_recipes.train.schedules import create_scheduler

    device = resolve_device(recipe.run.device)
    torch.manual_seed(recipe.run.seed)
    data = build_datasets(recipe)
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=recipe.data.batch_size, shuffle=True, drop_last=True, num_workers=recipe.data.num_workers
    )
    model = create_recipe_model(recipe).to(device)
    loss_fn = create_loss(recipe.optim.label_smoothing)
    o = recipe.optim
    opt = create_optimizer(model, o.name, o.lr, o.weight_decay, momentum=o.momentum)
    sched = create_scheduler("cosine", opt, total_steps=epochs * len(loader), warmup_steps=len(loader))
    rates = []
    for _ in range(epochs):
        model.train()
        start, seen = time.perf_counter(), 0
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            loss = loss_fn(model(images), targets)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            seen += images.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(seen / (time.perf_counter() - start))
    return rates


def fit_run(recipe, workdir: Path) -> tuple[list[float], float]:
    """``fit`` for the recipe's epochs: its per-epoch training images/s, and images/s over the whole call."""
    from timm_recipes.train.trainer import fit

    start = time.perf_counter()
    result = fit(recipe, output_dir=workdir / "run")
    wall = time.perf_counter() - start
    trained = result.history[-1]["step"] * recipe.data.batch_size * recipe.optim.accum_steps
    return [r["train_images_per_s"] for r in result.history], trained / wall


def measure_fit_overhead(size: int, epochs: int, rounds: int, device: str, workers: int) -> dict:
    recipe = _recipe(size, epochs, device, workers)
    hand, trainer, end_to_end = [], [], []
    for r in range(rounds):
        hand += hand_loop(recipe, epochs)[1:]
        with tempfile.TemporaryDirectory() as tmp:
            rates, e2e = fit_run(recipe, Path(tmp))
        trainer += rates[1:]
        end_to_end.append(e2e)
        print(f"round {r + 1}/{rounds}: hand {statistics.median(hand):.1f} img/s, fit {statistics.median(trainer):.1f}")
    h, t = statistics.median(hand), statistics.median(trainer)
    return {
        "image_size": size,
        "batch_size": recipe.data.batch_size,
        "num_workers": workers,
        "hand_loop_images_per_s": summarize(hand),
        "fit_train_images_per_s": summarize(trainer),
        "fit_end_to_end_images_per_s": summarize(end_to_end),
        "fit_over_hand": t / h,
        "overhead_pct": 100.0 * (h / t - 1.0),
    }


def measure_loop_overhead(size: int, steps: int, repeats: int, device: str) -> dict:
    import torch
    from torch import nn

    from timm_recipes.train.builders import create_recipe_model
    from timm_recipes.train.distributed import resolve_device
    from timm_recipes.train.ema import WeightEma
    from timm_recipes.train.engine import train_one_epoch
    from timm_recipes.train.schedules import create_scheduler

    recipe = _recipe(size, 2, device, 0)
    dev = resolve_device(device)
    g = torch.Generator().manual_seed(0)
    shape = (recipe.data.batch_size, 3, size, size)
    batches = [(torch.randn(shape, generator=g).to(dev), torch.randint(0, 10, (shape[0],), generator=g).to(dev))
               for _ in range(steps)]  # fmt: skip
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.optim.label_smoothing)

    def setup():
        torch.manual_seed(0)
        model = create_recipe_model(recipe).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        return model, opt, create_scheduler("cosine", opt, total_steps=10**6, warmup_steps=10)

    bare_model, bare_opt, bare_sched = setup()
    model, opt, sched = setup()
    ema = WeightEma(model, decay=0.99, every_k=recipe.ema.every_k)

    def bare() -> None:
        for images, targets in batches:
            loss_fn(bare_model(images), targets).backward()
            bare_opt.step()
            bare_opt.zero_grad(set_to_none=True)
            bare_sched.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def engine() -> None:
        train_one_epoch(
            model, batches, loss_fn, opt, sched, device=dev, epoch=1, ema=ema, progress=True,
            log_interval=recipe.run.log_interval,
        )  # fmt: skip

    times = time_interleaved({"bare loop": bare, "train_one_epoch": engine}, repeats=repeats, warmup=1)
    b, e = summarize(times["bare loop"]), summarize(times["train_one_epoch"])
    return {"steps": steps, "image_size": size, "bare_ms_per_step": b["median"] / steps * 1e3,
            "engine_ms_per_step": e["median"] / steps * 1e3, "engine_over_bare": e["median"] / b["median"]}  # fmt: skip


def measure_ema(models: tuple[str, ...], repeats: int, device: str) -> dict:
    import timm
    import torch
    from timm.utils import ModelEmaV3

    import timm_recipes  # noqa: F401
    from timm_recipes.train.distributed import resolve_device
    from timm_recipes.train.ema import WeightEma

    dev = resolve_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    out = {}
    for name in models:
        model = timm.create_model(name, num_classes=1000).to(dev)
        ours = WeightEma(model, decay=0.999, every_k=1)
        plain = ModelEmaV3(model, decay=0.999)
        candidates = {
            "WeightEma.update": lambda m=model, e=ours: e.update(m),
            "ModelEmaV3.update": lambda m=model, e=plain: e.update(m),
        }
        times = time_interleaved(candidates, repeats=repeats, warmup=3, sync=sync)
        ours_s, plain_s = summarize(times["WeightEma.update"]), summarize(times["ModelEmaV3.update"])
        out[name] = {
            "params": sum(p.numel() for p in model.parameters()),
            "WeightEma_ms": ours_s["median"] * 1e3,
            "ModelEmaV3_ms": plain_s["median"] * 1e3,
            "ratio": ours_s["median"] / plain_s["median"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 px images, fewer rounds")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--workers", type=int, default=0, help="loader worker processes (default: 0, the demo's)")
    args = parser.parse_args()
    settings = {
        "IMAGE_SIZE": IMAGE_SIZE,
        "EPOCHS_PER_RUN": EPOCHS_PER_RUN,
        "ROUNDS": ROUNDS,
        "EMA_REPEATS": EMA_REPEATS,
        "LOOP_REPEATS": LOOP_REPEATS,
    }
    if args.quick:
        settings.update(QUICK)
    overhead = measure_fit_overhead(
        settings["IMAGE_SIZE"], settings["EPOCHS_PER_RUN"], settings["ROUNDS"], args.device, args.workers
    )
    loop = measure_loop_overhead(16, LOOP_STEPS, settings["LOOP_REPEATS"], args.device)
    ema = measure_ema(EMA_MODELS, settings["EMA_REPEATS"], args.device)
    hand = overhead["hand_loop_images_per_s"]["median"]
    train, whole = overhead["fit_train_images_per_s"]["median"], overhead["fit_end_to_end_images_per_s"]["median"]
    rows = [
        ["hand-written loop (no EMA, no Mixup/CutMix, no logging)", hand, 1.0],
        ["fit: training phase (EMA, Mixup/CutMix, logging)", train, train / hand],
        ["fit: whole call (+ val raw & EMA every epoch, checkpoints)", whole, whole / hand],
    ]
    table = markdown_table(["loop", "images/s (median)", "vs hand loop"], rows)
    loop_rows = [
        ["bare loop", loop["bare_ms_per_step"], 1.0],
        ["train_one_epoch (EMA, progress bar, bookkeeping)", loop["engine_ms_per_step"], loop["engine_over_bare"]],
    ]
    table += "\n\n" + markdown_table(["pre-loaded batches, 16 px", "ms per step (median)", "vs bare"], loop_rows)
    ema_rows = [[name, r["params"], r["ModelEmaV3_ms"], r["WeightEma_ms"], r["ratio"]] for name, r in ema.items()]
    ema_header = ["EMA update", "params", "ModelEmaV3.update ms", "WeightEma.update ms", "ratio"]
    table += "\n\n" + markdown_table(ema_header, ema_rows)
    notes = (
        f"Demo recipe ({RECIPE!r}) on the built-in digits at {settings['IMAGE_SIZE']} px, batch "
        f"{overhead['batch_size']}, device {args.device}, {args.workers} loader workers; trainer overhead on the "
        f"training phase: {overhead['overhead_pct']:.1f} % (target <= 5 %). Medians over epochs after the first of "
        f"each run, {settings['ROUNDS']} interleaved rounds."
    )
    name = "trainer_overhead" if args.device == "cpu" else f"trainer_overhead_{args.device.split(':')[0]}"
    name += f"_w{args.workers}" if args.workers else ""
    write_results(
        name, {"settings": settings, "fit": overhead, "loop": loop, "ema": ema}, table,
        title="Trainer overhead: fit vs a hand-written loop; EMA update vs ModelEmaV3", notes=notes,
    )  # fmt: skip


if __name__ == "__main__":
    main()
