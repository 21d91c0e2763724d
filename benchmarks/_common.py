"""Shared plumbing for the benchmark scripts: interleaved timing, medians, machine record, JSON + Markdown.

Each script answers one question, measures the competitor in the same run, and writes
``benchmarks/results/<name>.json`` and ``benchmarks/results/<name>.md``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

RESULTS = Path(__file__).resolve().parent / "results"


def environment() -> dict[str, str]:
    """Library versions and the machine, recorded next to every result."""
    import albumentations
    import cv2
    import numpy
    import timm
    import torch
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "albumentations": albumentations.__version__,
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def time_interleaved(
    candidates: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 2,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Time each candidate ``repeats`` times, interleaved round by round, after ``warmup`` untimed rounds.

    Interleaving spreads slow drifts of the machine (thermal, other processes) evenly over all candidates.
    Returns the list of seconds per call for each candidate.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for round_ in range(warmup + repeats):
        for name, fn in candidates.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def summarize(samples: list[float]) -> dict[str, float]:
    """Median and spread (interquartile range) of a list of timings, in seconds."""
    qs = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {"median": statistics.median(samples), "q1": qs[0], "q3": qs[2], "n": len(samples)}


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, results: dict, table: str, *, title: str, notes: str = "") -> Path:
    """Write ``results/<name>.json`` (with the environment) and ``results/<name>.md``; print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = environment()
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d"), "environment": env, "results": results}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    env_line = ", ".join(f"{k} {v}" for k, v in env.items())
    md = f"# {title}\n\n{table}\n\n{notes}\n\nEnvironment: {env_line}.\n".replace("\n\n\n", "\n\n")
    (RESULTS / f"{name}.md").write_text(md)
    print(md)
    return RESULTS / f"{name}.md"
