"""Per-epoch metrics of a run: ``metrics.jsonl`` and ``metrics.csv`` side by side, and a PNG of the curves.

One record per epoch (a flat dict of numbers). The JSON-lines file is the source of truth; the CSV has the same
rows with the columns of the first record, for spreadsheets. Both are appended to and flushed after every epoch, so
a killed run keeps every finished epoch. On resume, :meth:`MetricsLog.truncate` drops the records of epochs that
the checkpoint does not contain (they are trained again) and rewrites both files atomically.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from timm_recipes.train.checkpoint import atomic_write_bytes

__all__ = ["MetricsLog", "plot_curves", "read_metrics"]

_LOG = logging.getLogger("timm_recipes.train")


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every readable record of a ``metrics.jsonl`` file (a missing file has none).

    A line that is not a JSON object with an integer ``epoch`` (a line torn by a kill, a garbage line anywhere) is
    skipped and reported in one warning naming the file and the line numbers; the records around it are kept.
    """
    path = Path(path)
    if not path.exists():
        return []
    records, bad = [], []
    text = path.read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and not isinstance(record["epoch"], bool):
            records.append(record)
        else:
            bad.append(number)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        _LOG.warning("%s: skipped %d unreadable line(s) (line %s); kept the %d readable records", path, len(bad),
                     shown, len(records))  # fmt: skip
    return records


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


class MetricsLog:
    """Appends one record per epoch to ``metrics.jsonl`` and ``metrics.csv`` in ``run_dir``.

    Args:
        run_dir: The run's folder (created).
        enabled: ``False`` on every rank but 0 under DDP: nothing is written.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.jsonl = self.run_dir / "metrics.jsonl"
        self.csv = self.run_dir / "metrics.csv"
        self.png = self.run_dir / "curves.png"
        self.records: list[dict[str, Any]] = read_metrics(self.jsonl)

    def _csv_text(self, records: Sequence[Mapping[str, Any]], header: bool) -> str:
        if not records:
            return ""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.records[0]), extrasaction="ignore", lineterminator="\n")
        if header:
            writer.writeheader()
        writer.writerows({k: _csv_value(v) for k, v in r.items()} for r in records)
        return buf.getvalue()

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one epoch's record to both files (and to :attr:`records`)."""
        record = dict(record)
        self.records.append(record)
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        first = not self.csv.exists() or self.csv.stat().st_size == 0
        for path, text in ((self.jsonl, json.dumps(record) + "\n"), (self.csv, self._csv_text([record], first))):
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())

    def truncate(self, last_epoch: int) -> None:
        """Keep only the records of epochs ``<= last_epoch`` (resume from that checkpoint) and rewrite the files."""
        self.records = [r for r in self.records if int(r.get("epoch", 0)) <= last_epoch]
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.records).encode())
        atomic_write_bytes(self.csv, self._csv_text(self.records, True).encode())

    def plot(self) -> Path | None:
        """Redraw ``curves.png`` from all records; returns its path (``None`` when disabled or empty)."""
        if not self.enabled or not self.records:
            return None
        return plot_curves(self.records, self.png)


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        value = r.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(float(r["epoch"]))
            ys.append(float(value))
    return xs, ys


def plot_curves(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Loss, top-1 accuracy and learning rate per epoch, three panels in one PNG (written atomically)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or GUI state touched

    fig = Figure(figsize=(13, 3.8), dpi=100)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    for key, label in (("train_loss", "train"), ("val_loss", "val (raw)"), ("ema_val_loss", "val (EMA)")):
        ax_loss.plot(*_series(records, key), marker=".", label=label)
    for key, label in (("val_top1", "val top-1 (raw)"), ("ema_val_top1", "val top-1 (EMA)")):
        ax_acc.plot(*_series(records, key), marker=".", label=label)
    ax_lr.plot(*_series(records, "lr"), marker=".", color="tab:purple")
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy (%)"), (ax_lr, "learning rate (end of epoch)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.legend()
    ax_acc.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())
