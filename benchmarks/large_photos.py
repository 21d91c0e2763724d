"""Large photos: ms per image for decode + training crop, with and without reduced-size JPEG decoding.

Question: on photos larger than 1,000 px, how much does ``decode_and_transform`` gain by decoding a JPEG at 1/2 or
1/4 size (libjpeg's DCT scaling, only where it is safe: see ``timm_recipes.data.decode``) over decoding it whole,
against the floor of a full OpenCV decode alone, and against torchvision's PIL pipeline (what timm's training
transform runs) in the same run? One thread, as in a loader worker; uint8 outputs (the GPU path).

The sample photos (640×427) are enlarged (bicubic) and re-encoded at quality 92 to 3000×2000 and 6000×4000: their
detail is the original's, spread over more pixels, so the decoding work (which depends on the pixel count) is that
of a real photo of that size.

Run: ``python benchmarks/large_photos.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import io

import torch
from _common import markdown_table, summarize, time_interleaved, write_results
from PIL import Image
from torchvision import transforms as T

from timm_recipes.data import multiscale_crop_pipeline, random_resized_crop_pipeline
from timm_recipes.data.datasets import decode_image, sample_jpeg_bytes
from timm_recipes.data.decode import decode_and_transform, reduction_factor

SIZES = ((3000, 2000), (6000, 4000))  # width, height
QUALITY = 92
CROP = 224
REPEATS, WARMUP = 15, 2
QUICK_REPEATS, QUICK_WARMUP = 3, 1


def _pil(data: bytes, draft: bool) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    if draft:  # PIL's own DCT scaling: the largest reduction that keeps both sides >= the crop's scale
        im.draft("RGB", (im.width // 4, im.height // 4))
    return im.convert("RGB")


def candidates(data: bytes) -> dict[str, object]:
    ms = multiscale_crop_pipeline(crop_size=CROP, normalize=False, seed=0)
    rrc = random_resized_crop_pipeline(size=CROP, normalize=False, seed=0)
    tv = T.Compose([T.RandomResizedCrop(CROP), T.RandomHorizontalFlip(), T.PILToTensor()])
    return {
        "decode floor: full OpenCV decode": lambda: decode_image(data),
        "ours multiscale, full decode": lambda: decode_and_transform(data, ms, reduce=False),
        "ours multiscale, reduced decode": lambda: decode_and_transform(data, ms),
        "ours RRC, full decode": lambda: decode_and_transform(data, rrc, reduce=False),
        "ours RRC, reduced decode": lambda: decode_and_transform(data, rrc),
        "torchvision PIL RRC (timm's path)": lambda: tv(_pil(data, draft=False)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats, warmup = (QUICK_REPEATS, QUICK_WARMUP) if args.quick else (REPEATS, WARMUP)
    torch.set_num_threads(1)
    results, rows = {}, []
    for width, height in SIZES:
        photos = sample_jpeg_bytes((width, height), quality=QUALITY)
        group: dict[str, list[float]] = {}
        for data in photos:
            times = time_interleaved(candidates(data), repeats=repeats, warmup=warmup)
            for name, t in times.items():
                group.setdefault(name, []).extend(t)
        stats = {name: summarize(t) for name, t in group.items()}
        floor = stats["decode floor: full OpenCV decode"]["median"]
        label = f"{width}×{height}"
        factors = {
            "multiscale": reduction_factor(multiscale_crop_pipeline(crop_size=CROP), height, width),
            "rrc": reduction_factor(random_resized_crop_pipeline(size=CROP), height, width),
        }
        results[label] = {"reduction_factor": factors, "ms": {n: s["median"] * 1e3 for n, s in stats.items()}}
        for name, s in stats.items():
            iqr = f"{s['q1'] * 1e3:.3g}–{s['q3'] * 1e3:.3g}"
            rows.append([label, name, s["median"] * 1e3, iqr, s["median"] / floor])
        for kind, full, red in (("multiscale", "ours multiscale, full decode", "ours multiscale, reduced decode"),
                                ("RRC", "ours RRC, full decode", "ours RRC, reduced decode")):  # fmt: skip
            results[label][f"{kind}_speedup_reduced_over_full"] = stats[full]["median"] / stats[red]["median"]
        results[label]["rrc_speedup_reduced_over_torchvision"] = (
            stats["torchvision PIL RRC (timm's path)"]["median"] / stats["ours RRC, reduced decode"]["median"]
        )
    table = markdown_table(["photo", "candidate", "median ms / image", "IQR ms", "× full-decode floor"], rows)
    summary = "; ".join(
        f"{label}: multiscale ×{r['multiscale_speedup_reduced_over_full']:.2f} "
        f"(factor {r['reduction_factor']['multiscale']}), "
        f"RRC ×{r['RRC_speedup_reduced_over_full']:.2f} (factor {r['reduction_factor']['rrc']}), "
        f"RRC vs torchvision ×{r['rrc_speedup_reduced_over_torchvision']:.2f}"
        for label, r in results.items()
    )
    notes = (
        f"The two sample photos enlarged to each size, JPEG quality {QUALITY}; {CROP} px crops, uint8 output; "
        "one thread; "
        f"{repeats} interleaved rounds after {warmup} warm-up rounds per photo, median and IQR over both photos. "
        "'× floor' = median / full OpenCV decode alone (below 1: faster than decoding the whole image). "
        f"Speed-up of reduced over full decoding (same draws): {summary}."
    )
    write_results("large_photos", {"sizes": SIZES, "results": results}, table, title="Large photos", notes=notes)


if __name__ == "__main__":
    main()
