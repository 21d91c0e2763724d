"""Question: how many training images per second does one worker thread turn from JPEG bytes into tensors?

From JPEG bytes (the two real photos of ``sklearn.datasets.load_sample_images``, re-encoded as 64 ImageNet-like
files of about 500×375) to the normalised 224×224 float32 tensor, one thread (``cv2.setNumThreads(1)``,
``torch.set_num_threads(1)``), interleaved rounds, medians:

* ``ours``: ``multiscale_crop_pipeline(cutout=CutoutConfig())`` on ``cv2.imdecode`` RGB (the window is resampled,
  antialiased with PIL's bilinear filter); ``ours uint8``: the same with ``normalize=False``;
* ``torchvision PIL``: the same recipe in ``torchvision.transforms.v2`` on PIL images (``RandomShortestSize``
  S in [256, 480] → ``RandomCrop`` → flip → tensor → normalise → ``RandomErasing`` of a square);
* ``torchvision tensor``: the same v2 recipe on ``torchvision.io.decode_jpeg`` tensors (``antialias=True``);
* ``timm``: ``timm.data.create_transform(224, is_training=True)`` on PIL (its defaults: RRC, flip, colour jitter);
* decode-only floors: ``cv2.imdecode`` (RGB) and PIL ``open().convert("RGB")``.

Targets: ours ≥ 2.5× torchvision-PIL, ≥ 1.5× torchvision-tensor, ≥ 0.55× the OpenCV decode floor (float output),
≥ 0.7× (``normalize=False``).

Run: ``python benchmarks/data_pipeline.py`` (about a minute) or ``--quick``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cv2
import numpy as np
import torch
from _common import markdown_table, summarize, time_interleaved, write_results

# ----------------------------------------------------------------------------------------------- settings
NUM_FILES = 64
FILE_SIZE = (500, 375)  # width, height of the landscape files (portrait ones are transposed)
JPEG_QUALITY = (80, 95)
CROP = 224
SCALE_RANGE = (256, 480)
REPEATS, WARMUP = 15, 2
QUICK_REPEATS, QUICK_WARMUP = 5, 1
TARGETS = {"torchvision PIL": 2.5, "torchvision tensor": 1.5, "decode floor (float)": 0.55, "decode floor (uint8)": 0.7}


def make_jpegs(n: int = NUM_FILES, seed: int = 0) -> list[bytes]:
    """``n`` JPEG files cut from the two real sample photos: random crops, ~500×375 (¼ portrait), varied quality."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    files = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        frac = rng.uniform(0.7, 1.0)
        ch, cw = int(h * frac), int(w * frac)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = photo[y : y + ch, x : x + cw]
        size = FILE_SIZE if i % 4 else FILE_SIZE[::-1]
        if size[1] > size[0]:  # portrait: take a portrait window of the crop
            crop = crop[:, : int(ch * 0.75)]
        img = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        files.append(buf.tobytes())
    return files


def build_candidates(files: list[bytes]) -> dict[str, object]:
    import torchvision
    from PIL import Image
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
    from torchvision.transforms import v2

    from timm_recipes.data import CutoutConfig, multiscale_crop_pipeline

    arrays = [np.frombuffer(f, np.uint8) for f in files]
    tensors = [torch.frombuffer(bytearray(f), dtype=torch.uint8) for f in files]
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)

    def cv2_decode(buf: np.ndarray) -> np.ndarray:
        if rgb_flag is not None:
            return cv2.imdecode(buf, rgb_flag)
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def pil_decode(data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data)).convert("RGB")

    cutout = CutoutConfig()  # p=0.5, one square of side 0.5 × short side
    ours = multiscale_crop_pipeline(crop_size=CROP, scale_range=SCALE_RANGE, cutout=cutout, seed=0)
    ours_u8 = multiscale_crop_pipeline(crop_size=CROP, scale_range=SCALE_RANGE, cutout=cutout, normalize=False, seed=0)
    # the same recipe in torchvision v2: the erased square covers 0.5² of the crop, as Cutout's (before clipping)
    tv_tail = [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD),
        v2.RandomErasing(p=0.5, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0),
    ]
    tv_head = [
        v2.RandomShortestSize(min_size=list(range(SCALE_RANGE[0], SCALE_RANGE[1] + 1)), antialias=True),
        v2.RandomCrop(CROP),
        v2.RandomHorizontalFlip(),
    ]
    tv_pil = v2.Compose([*tv_head, v2.PILToTensor(), *tv_tail])
    tv_tensor = v2.Compose([*tv_head, *tv_tail])
    timm_tf = create_transform(CROP, is_training=True)

    def run_all(fn, items):
        return lambda: [fn(x) for x in items]

    return {
        "ours": run_all(lambda b: ours(image=cv2_decode(b))["image"], arrays),
        "ours uint8": run_all(lambda b: ours_u8(image=cv2_decode(b))["image"], arrays),
        "torchvision PIL": run_all(lambda d: tv_pil(pil_decode(d)), files),
        "torchvision tensor": run_all(lambda t: tv_tensor(torchvision.io.decode_jpeg(t)), tensors),
        "timm": run_all(lambda d: timm_tf(pil_decode(d)), files),
        "decode cv2": run_all(cv2_decode, arrays),
        "decode PIL": run_all(pil_decode, files),
    }


def _cpu_timed(fn, sink: list[float]):
    """``fn`` that also appends this thread's CPU seconds per call to ``sink``."""

    def run():
        t0 = time.thread_time()
        out = fn()
        sink.append(time.thread_time() - t0)
        return out

    return run


def _ratios(ips: dict[str, float]) -> dict[str, float]:
    return {
        "torchvision PIL": ips["ours"] / ips["torchvision PIL"],
        "torchvision tensor": ips["ours"] / ips["torchvision tensor"],
        "timm": ips["ours"] / ips["timm"],
        "decode floor (float)": ips["ours"] / ips["decode cv2"],
        "decode floor (uint8)": ips["ours uint8"] / ips["decode cv2"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    files = make_jpegs()
    candidates = build_candidates(files)
    for name, fn in candidates.items():  # every candidate really produces what it should
        out = fn()[0]
        shape = tuple(out.shape) if hasattr(out, "shape") else out.size
        print(f"{name:20s} -> {type(out).__name__} {shape} {getattr(out, 'dtype', '')}")
    repeats, warmup = (QUICK_REPEATS, QUICK_WARMUP) if args.quick else (REPEATS, WARMUP)
    # wall clock (what _common measures) and, from the same calls, this thread's CPU time: on a shared machine
    # other processes stretch the wall clock; the CPU time is what one dedicated worker core would spend
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    times = time_interleaved(
        {name: _cpu_timed(fn, cpu[name]) for name, fn in candidates.items()}, repeats=repeats, warmup=warmup
    )
    cpu = {name: t[warmup:] for name, t in cpu.items()}

    stats = {name: summarize(t) for name, t in times.items()}
    cpu_stats = {name: summarize(t) for name, t in cpu.items()}
    ips = {name: len(files) / s["median"] for name, s in stats.items()}
    cpu_ips = {name: len(files) / s["median"] for name, s in cpu_stats.items()}
    ratios, cpu_ratios = _ratios(ips), _ratios(cpu_ips)
    rows = [
        [
            name,
            round(ips[name]),
            1e3 * stats[name]["median"] / len(files),
            f"{1e3 * stats[name]['q1'] / len(files):.3g}-{1e3 * stats[name]['q3'] / len(files):.3g}",
            round(cpu_ips[name]),
            1e3 * cpu_stats[name]["median"] / len(files),
        ]
        for name in candidates
    ]
    header = ["pipeline", "images/s (wall)", "ms/image", "ms IQR", "images/s (CPU time)", "CPU ms/image"]
    table = markdown_table(header, rows)
    ratio_rows = [
        [
            f"ours{' uint8' if 'uint8' in k else ''} vs {k}",
            v,
            cpu_ratios[k],
            TARGETS.get(k, "-"),
            ("yes" if v >= TARGETS[k] else "NO") if k in TARGETS else "-",
            ("yes" if cpu_ratios[k] >= TARGETS[k] else "NO") if k in TARGETS else "-",
        ]
        for k, v in ratios.items()
    ]
    ratio_header = ["ratio (speed-up)", "wall", "CPU time", "target", "met (wall)", "met (CPU)"]
    table += "\n\n" + markdown_table(ratio_header, ratio_rows)
    notes = (
        f"{len(files)} JPEG files (~{FILE_SIZE[0]}×{FILE_SIZE[1]}, quality {JPEG_QUALITY[0]}-{JPEG_QUALITY[1]}) "
        f"from the two sklearn sample photos; one thread; {repeats} interleaved rounds after {warmup} warm-up; "
        f"S in {list(SCALE_RANGE)}, crop {CROP}, Cutout p=0.5 (square of side 0.5 × {CROP}). "
        f"Wall clock and this thread's CPU time of the same calls; 1-minute load average at the end "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a shared machine stretches the wall clock)."
    )
    results = {
        "settings": {
            "files": len(files),
            "repeats": repeats,
            "warmup": warmup,
            "crop": CROP,
            "scale_range": SCALE_RANGE,
        },
        "seconds_per_pass": stats,
        "cpu_seconds_per_pass": cpu_stats,
        "images_per_second": ips,
        "images_per_second_cpu_time": cpu_ips,
        "ratios": ratios,
        "ratios_cpu_time": cpu_ratios,
        "load_average_1min": os.getloadavg()[0],
        "targets": TARGETS,
    }
    write_results(
        "data_pipeline", results, table, title="Data pipeline: JPEG bytes → 224×224 tensor, one thread", notes=notes
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
