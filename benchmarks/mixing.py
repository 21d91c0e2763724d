"""Mixup / CutMix: milliseconds per batch of 128 × 3 × 224 × 224, ours against timm and torchvision, same run.

Question: how long does mixing one ImageNet-sized batch take with ``timm_recipes.data.MixupCutmix`` (in place and
into a new tensor, float32 and uint8) compared with ``timm.data.Mixup`` (which always works in place) and
torchvision's ``v2.MixUp`` / ``v2.CutMix`` (always a new tensor), under the same settings (batch mode, α = 1,
label smoothing 0)? Also the collate step: our collator against timm's ``FastCollateMixup`` on uint8 samples.

On the CPU it also measures what bounds the calls on a GPU, where a batch's arithmetic takes microseconds and the
host's work per call decides: the GPU code path of ours (the whole-batch operations, forced on the CPU) against timm
on a tiny batch (128 × 3 × 8², 10 classes), host µs per call, and the number of operations each launches on the
images' device (counted on PyTorch's ``meta`` device, where nothing runs: fills, scatters, copies to the device,
arithmetic; views are free). ``--device cuda`` on a GPU gives the real figures.

Run: ``python benchmarks/mixing.py`` (``--quick`` for a smoke run, ``--device cuda`` on a GPU).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import markdown_table, summarize, time_interleaved, write_results
from timm.data import FastCollateMixup, Mixup
from torch.utils.data import default_collate
from torchvision.transforms import v2

from timm_recipes.data import MixupCutmix, MixupCutmixCollator

BATCH, CHANNELS, SIZE, NUM_CLASSES = 128, 3, 224, 1000
REPEATS, WARMUP = 21, 3
QUICK_REPEATS, QUICK_WARMUP = 3, 1
SEED = 0

SETTINGS = {  # name -> (mixup_alpha, cutmix_alpha); switch_prob 0.5 when both are on
    "mixup": (1.0, 0.0),
    "cutmix": (0.0, 1.0),
    "switch": (1.0, 1.0),
}


def torchvision_mixer(mixup_alpha: float, cutmix_alpha: float) -> v2.Transform:
    mixers = []
    if mixup_alpha > 0:
        mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=NUM_CLASSES))
    if cutmix_alpha > 0:
        mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=NUM_CLASSES))
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


def candidates(device: torch.device) -> tuple[dict[str, dict[str, object]], dict[str, dict[str, object]]]:
    """Two sets of groups (group -> candidate name -> zero-argument callable): batch transforms, and collate
    functions (CPU only, timed with one thread as in a DataLoader worker)."""
    g = torch.Generator().manual_seed(SEED)
    x = torch.rand(BATCH, CHANNELS, SIZE, SIZE, generator=g).to(device)
    x_u8 = (x * 255).round().to(torch.uint8)
    targets = torch.randint(0, NUM_CLASSES, (BATCH,), generator=g).to(device)
    groups: dict[str, dict[str, object]] = {}
    for name, (ma, ca) in SETTINGS.items():
        ours = MixupCutmix(NUM_CLASSES, ma, ca, generator=torch.Generator().manual_seed(SEED))
        timm_mix = Mixup(mixup_alpha=ma, cutmix_alpha=ca, label_smoothing=0.0, num_classes=NUM_CLASSES)
        tv = torchvision_mixer(ma, ca)
        # In-place candidates keep mixing the same batch: values stay convex combinations of the originals.
        x_timm, x_ours = x.clone(), x.clone()
        groups[f"{name} float32"] = {
            "timm Mixup (in place)": lambda m=timm_mix, xx=x_timm: m(xx, targets),
            "ours inplace=True": lambda m=ours, xx=x_ours: m(xx, targets, inplace=True),
            "ours inplace=False": lambda m=ours: m(x, targets),
            "torchvision v2": lambda m=tv: m(x, targets),
        }
        x_u8_ours = x_u8.clone()
        groups[f"{name} uint8"] = {
            "ours inplace=True": lambda m=ours, xx=x_u8_ours: m(xx, targets, inplace=True),
            "ours inplace=False": lambda m=ours: m(x_u8, targets),
        }
    # Per-call overhead: a tiny batch (128 × 3 × 32², 10 classes) on which Python work and the number of operations
    # dominate, as they do on a GPU (where each operation is a kernel launch). Ours gets the targets on the host, as
    # the trainer's prefetcher hands them over (no device synchronisation to validate them).
    xs = torch.rand(BATCH, CHANNELS, 32, 32, generator=g).to(device)
    ts_host = torch.randint(0, 10, (BATCH,), generator=g)
    ts = ts_host.to(device)
    for name, (ma, ca) in SETTINGS.items():
        ours = MixupCutmix(10, ma, ca, generator=torch.Generator().manual_seed(SEED))
        timm_mix = Mixup(mixup_alpha=ma, cutmix_alpha=ca, label_smoothing=0.0, num_classes=10)
        xs_timm, xs_ours = xs.clone(), xs.clone()
        groups[f"overhead {name} 128×3×32², 10 classes"] = {
            "timm Mixup (in place)": lambda m=timm_mix, xx=xs_timm: m(xx, ts),
            "ours inplace=True": lambda m=ours, xx=xs_ours: m(xx, ts_host, inplace=True),
        }
    collate_groups: dict[str, dict[str, object]] = {}
    if device.type == "cpu":
        samples = [(x_u8[i].clone(), int(targets[i])) for i in range(BATCH)]
        for name, (ma, ca) in SETTINGS.items():
            ours_c = MixupCutmixCollator(NUM_CLASSES, ma, ca, generator=torch.Generator().manual_seed(SEED))
            timm_c = FastCollateMixup(mixup_alpha=ma, cutmix_alpha=ca, label_smoothing=0.0, num_classes=NUM_CLASSES)
            collate_groups[f"collate {name} uint8"] = {
                "default_collate (no mixing)": lambda: default_collate(samples),
                "ours MixupCutmixCollator": lambda c=ours_c: c(samples),
                "timm FastCollateMixup": lambda c=timm_c: c(samples),
            }
    return groups, collate_groups


def device_operations(fn) -> int:
    """Operations ``fn`` runs whose results live on the ``meta`` device (the images' device), views excluded."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    views = {"view", "slice", "select", "expand", "alias", "_unsafe_view", "unsqueeze", "squeeze", "t", "transpose"}

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            on_device = any(t.device.type == "meta" for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
            if on_device and func.overloadpacket.__name__ not in views:
                self.n += 1
            return out

    with Count() as counter:
        fn()
    return counter.n


def gpu_path_on_cpu(repeats: int, warmup: int) -> tuple[dict, list[list[object]]]:
    """Ours on its GPU code path (``CHUNKED_DEVICES = ()``) vs timm: host µs per call and device operations."""
    import timm_recipes.data.mixing as mixing

    saved = mixing.CHUNKED_DEVICES
    mixing.CHUNKED_DEVICES = ()  # the whole-batch operations that run on GPUs
    try:
        g = torch.Generator().manual_seed(SEED)
        x = torch.rand(BATCH, CHANNELS, 8, 8, generator=g)
        t = torch.randint(0, 10, (BATCH,), generator=g)
        meta_x, meta_t = torch.empty(BATCH, CHANNELS, 224, 224, device="meta"), t.to("meta")
        results, rows = {}, []
        for name, (ma, ca) in SETTINGS.items():
            ours = MixupCutmix(10, ma, ca, generator=torch.Generator().manual_seed(SEED))
            theirs = Mixup(mixup_alpha=ma, cutmix_alpha=ca, label_smoothing=0.0, num_classes=10)
            xa, xb = x.clone(), x.clone()
            fns = {"timm Mixup (in place)": lambda m=theirs, xx=xa: m(xx, t),
                   "ours inplace=True": lambda m=ours, xx=xb: m(xx, t, inplace=True)}  # fmt: skip
            times = time_interleaved(fns, repeats=repeats * 50, warmup=warmup * 50)
            meta_calls = {"timm Mixup (in place)": lambda m=theirs: m(meta_x, meta_t),
                          "ours inplace=True": lambda m=ours: m(meta_x, t, inplace=True)}  # fmt: skip
            ops = {impl: [device_operations(call) for _ in range(20)] for impl, call in meta_calls.items()}
            ref = summarize(times["timm Mixup (in place)"])["median"]
            results[name] = {}
            for impl in fns:
                med = summarize(times[impl])["median"]
                results[name][impl] = {"host_us": med * 1e6, "device_ops_mean": float(np.mean(ops[impl])),
                                       "speedup_vs_timm": ref / med}  # fmt: skip
                rows.append([f"GPU code path {name}, host", impl, med * 1e6, float(np.mean(ops[impl])), ref / med])
        return results, rows
    finally:
        mixing.CHUNKED_DEVICES = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few repeats only (smoke run)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats, warmup = (QUICK_REPEATS, QUICK_WARMUP) if args.quick else (REPEATS, WARMUP)
    np.random.seed(SEED)  # timm draws from NumPy's global generator
    torch.manual_seed(SEED)  # torchvision from torch's
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    groups, collate_groups = candidates(device)
    flat = {f"{group} | {name}": fn for group, fns in groups.items() for name, fn in fns.items()}
    times = time_interleaved(flat, repeats=repeats, warmup=warmup, sync=sync)  # type: ignore[arg-type]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # collate functions run in DataLoader workers, which use one thread each
    flat = {f"{group} | {name}": fn for group, fns in collate_groups.items() for name, fn in fns.items()}
    times.update(time_interleaved(flat, repeats=repeats, warmup=warmup))  # type: ignore[arg-type]
    torch.set_num_threads(threads)
    groups.update(collate_groups)

    results: dict[str, dict[str, dict[str, float]]] = {}
    rows = []
    for group, fns in groups.items():
        results[group] = {}
        reference = None
        for name in fns:
            stats = summarize(times[f"{group} | {name}"])
            ms = {k: v * 1e3 if k != "n" else v for k, v in stats.items()}
            results[group][name] = ms
            if reference is None and ("timm" in name):
                reference = ms["median"]
        for name, ms in results[group].items():
            ratio = reference / ms["median"] if reference else None  # no timm counterpart (uint8 transform)
            ms["speedup_vs_timm"] = ratio
            rows.append([group, name, ms["median"], f"{ms['q1']:.3g}–{ms['q3']:.3g}", "–" if ratio is None else ratio])
    table = markdown_table(["setting", "implementation", "median ms / batch", "IQR ms", "speed-up vs timm (×)"], rows)
    best = {
        group: res["ours inplace=True"]["speedup_vs_timm"]
        for group, res in results.items()
        if res.get("ours inplace=True", {}).get("speedup_vs_timm")
    }
    notes = (
        f"Batch {BATCH}×{CHANNELS}×{SIZE}×{SIZE} on {device.type}, batch mode, α = 1, switch_prob 0.5, label "
        f"smoothing 0; {repeats} interleaved rounds after {warmup} warm-up rounds; median and interquartile range "
        "per call (images and soft targets). timm's Mixup mixes in place (it cannot keep the input); torchvision "
        "always returns a new tensor; `inplace=False` pays for a fresh batch-sized tensor. Speed-up = timm median / "
        "this median. Collate functions are timed with one thread, as in a DataLoader worker. Ours in place vs timm: "
        + ", ".join(f"{g} {v:.2f}×" for g, v in best.items())
        + "."
    )
    payload = {"settings": {"batch": BATCH, "size": SIZE, "repeats": repeats, "device": device.type}, "groups": results}
    if device.type == "cpu":
        proxy, proxy_rows = gpu_path_on_cpu(repeats, warmup)
        payload["gpu_code_path_on_cpu"] = proxy
        table += "\n\n" + markdown_table(
            ["setting", "implementation", "host µs / call", "operations on the device", "speed-up vs timm (×)"],
            proxy_rows,
        )
        notes += (
            " GPU code path on this CPU: ours with the whole-batch operations it uses on GPUs, timm as it is, on a "
            f"{BATCH}×{CHANNELS}×8² batch with 10 classes ({repeats * 50} interleaved calls each): the host time per "
            "call, which bounds a GPU call; operations on the device counted on the meta device (mean of 20 calls; "
            "ours includes its two small host-to-device copies of label indices and values)."
        )
    write_results(
        f"mixing_{device.type}" if device.type != "cpu" else "mixing",
        payload,
        table,
        title="Mixup / CutMix: ms per batch",
        notes=notes,
    )


if __name__ == "__main__":
    main()
