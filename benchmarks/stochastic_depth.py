"""Stochastic depth: training-step time of "batch" mode (branches skipped) against timm's per-sample drop path.

Question: with p_L = 0.5 on ResNet-50, how much faster is one training step (forward + backward + SGD step) when
a dropped block's residual branch is not computed at all (``recipe_resnet50``, ``stochastic_depth_mode="batch"``)
than with timm's per-sample ``DropPath`` at the same rate, which computes every branch and zeroes some rows? And
how does that compare with the FLOP-weighted ideal, and with no stochastic depth at all? In inference the recipe
model must cost exactly what timm's ``resnet50`` costs (ratio 1.00 within noise).

All candidates run in one process, interleaved step by step, medians after warm-up. A batch-mode step takes a
random amount of time (it depends on which blocks are dropped), hence the many repeats.

Run: ``python benchmarks/stochastic_depth.py`` (about 2–3 minutes on 2 CPU cores), ``--quick`` (a smoke run),
``--threads 1`` on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from _common import markdown_table, summarize, time_interleaved, write_results

import timm_recipes  # noqa: F401  (registers recipe_resnet50)
from timm_recipes.layers import expected_kept_fraction, stochastic_depth_modules

BATCH, SIZE, NUM_CLASSES = 16, 128, 1000
DROP_PATH_RATE = 0.5  # 1 − p_L
TRAIN_REPEATS, TRAIN_WARMUP = 30, 3
INFER_REPEATS, INFER_WARMUP = 30, 2
QUICK = dict(train_repeats=4, train_warmup=1, infer_repeats=3, infer_warmup=1)
SEED = 0


def branch_macs(model: nn.Module, x: torch.Tensor) -> tuple[list[float], float]:
    """Multiply-accumulates of each droppable block's residual branch, and of the whole network, for input ``x``.

    Counts convolutions and linear layers (where nearly all the work is), with forward hooks in eval mode.
    """
    macs: dict[nn.Module, float] = {}

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs[module] = output.numel() * per_output
        else:
            macs[module] = output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(x)
    for hook in hooks:
        hook.remove()
    per_block = []
    for layer in stochastic_depth_modules(model):
        block = next(b for b in model.modules() if getattr(b, "drop_path", None) is layer)
        shortcut = set(block.downsample.modules()) if getattr(block, "downsample", None) is not None else set()
        per_block.append(sum(v for m, v in macs.items() if m in set(block.modules()) - shortcut))
    return per_block, float(sum(macs.values()))


def training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def inference(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    return forward


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps only (smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # e.g. 1 on a machine shared with other jobs: no oversubscription
    reps = (
        QUICK
        if args.quick
        else dict(
            train_repeats=TRAIN_REPEATS,
            train_warmup=TRAIN_WARMUP,
            infer_repeats=INFER_REPEATS,
            infer_warmup=INFER_WARMUP,
        )
    )

    torch.manual_seed(SEED)
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    y = torch.randint(0, NUM_CLASSES, (BATCH,))
    recipe = timm.create_model("recipe_resnet50", drop_path_rate=DROP_PATH_RATE, stochastic_depth_mode="batch")
    per_sample = timm.create_model("resnet50", drop_path_rate=DROP_PATH_RATE)
    plain = timm.create_model("resnet50", drop_path_rate=0.0)
    for model in (per_sample, plain):
        model.load_state_dict(recipe.state_dict(), strict=True)

    # What the batch mode can save at best: the expected kept fraction of the droppable (branch) work.
    block_macs, total_macs = branch_macs(recipe, x)
    probs = [layer.survival_prob for layer in stochastic_depth_modules(recipe)]
    kept = expected_kept_fraction(probs, block_macs)
    branch_share = sum(block_macs) / total_macs
    ideal_speedup = 1.0 / (1.0 - branch_share * (1.0 - kept))

    names = {
        "batch": "recipe_resnet50, batch mode",
        "row": "timm resnet50, per-sample DropPath",
        "none": "timm resnet50, no stochastic depth",
    }
    train = time_interleaved(
        {
            names["batch"]: training_step(recipe, x, y),
            names["row"]: training_step(per_sample, x, y),
            names["none"]: training_step(plain, x, y),
        },
        repeats=reps["train_repeats"],
        warmup=reps["train_warmup"],
    )
    infer = time_interleaved(
        {"recipe_resnet50": inference(recipe, x), "timm resnet50": inference(plain, x)},
        repeats=reps["infer_repeats"],
        warmup=reps["infer_warmup"],
    )

    train_stats = {name: dict(summarize(t), mean=statistics.fmean(t)) for name, t in train.items()}
    infer_stats = {name: summarize(t) for name, t in infer.items()}
    per_sample_median = train_stats[names["row"]]["median"]
    speedup = {name: per_sample_median / s["median"] for name, s in train_stats.items()}
    inference_ratio = infer_stats["timm resnet50"]["median"] / infer_stats["recipe_resnet50"]["median"]

    rows = [
        [
            "training step",
            name,
            s["median"] * 1e3,
            f"{s['q1'] * 1e3:.0f}–{s['q3'] * 1e3:.0f}",
            s["mean"] * 1e3,
            speedup[name],
        ]
        for name, s in train_stats.items()
    ]
    rows += [
        ["inference", name, s["median"] * 1e3, f"{s['q1'] * 1e3:.0f}–{s['q3'] * 1e3:.0f}", "", ""]
        for name, s in infer_stats.items()
    ]
    table = markdown_table(
        ["pass", "model", "median ms", "IQR ms", "mean ms", "speed-up vs per-sample (×)"],
        rows,
    )
    notes = (
        f"ResNet-50, batch {BATCH} × 3 × {SIZE} × {SIZE}, SGD (momentum 0.9), p_L = {1 - DROP_PATH_RATE:g} "
        f"(drop_path_rate {DROP_PATH_RATE:g}), {torch.get_num_threads()} intra-op thread(s); "
        f"{reps['train_repeats']} interleaved training steps per candidate "
        f"after {reps['train_warmup']} warm-up rounds.\n\n"
        f"Batch mode, measured speed-up per training step over timm's per-sample drop path: "
        f"**{speedup[names['batch']]:.2f}×** (medians; target ≥ 1.2×). Expected kept fraction of the branch "
        f"compute (MAC-weighted over the {len(probs)} blocks, lecture rule): {kept:.3f}; the branches are "
        f"{branch_share:.1%} of the network's MACs, so the FLOP-weighted ideal is {ideal_speedup:.2f}×.\n\n"
        f"Inference (eval, batch {BATCH}): timm / recipe time ratio **{inference_ratio:.2f}** (1.00 = same cost)."
    )
    results = {
        "settings": dict(
            batch=BATCH,
            size=SIZE,
            drop_path_rate=DROP_PATH_RATE,
            quick=args.quick,
            seed=SEED,
            threads=torch.get_num_threads(),
            **reps,
        ),
        "training_step_seconds": train_stats,
        "inference_seconds": infer_stats,
        "speedup_vs_per_sample": speedup,
        "expected_kept_fraction_of_branch_macs": kept,
        "branch_share_of_macs": branch_share,
        "flop_weighted_ideal_speedup": ideal_speedup,
        "inference_time_ratio_timm_over_recipe": inference_ratio,
        "raw_seconds": {"training": train, "inference": infer},
    }
    write_results("stochastic_depth", results, table, title="Stochastic depth: batch mode vs per-sample", notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
