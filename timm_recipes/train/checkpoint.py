"""Training checkpoints: safetensors weights, a pickle-free training state, atomic writes, ``last`` and ``best``.

Layout of a run's ``checkpoints/`` folder::

    checkpoints/
      last.json                  tag: {"checkpoint": "ckpt-e0007-3f2a9c1d", "epoch": 7, ...}
      best.json                  tag of the best epoch so far (may name the same folder as last.json)
      ckpt-e0007-3f2a9c1d/       one complete checkpoint, never modified once its name is final
        model.safetensors        the raw weights (the bare model's state_dict)
        ema.safetensors          the EMA weights (when EMA is on)
        state.json               optimizer, scheduler, scaler, EMA counters, RNG states, epoch, step, ... as JSON,
        state.safetensors        with every tensor of that state stored here (no pickle anywhere)
        recipe.yaml              the resolved recipe
        manifest.json            format, model name and classes, epoch, step, metrics, size + SHA-256 of each file

Crash safety: a checkpoint is first written into ``.tmp-<name>/`` (every file fsynced, ``manifest.json`` last),
renamed to its final unique name (``os.replace``, atomic on POSIX and Windows), and only then published by
rewriting the small ``last.json`` / ``best.json`` tags atomically (temp file in the same folder, fsync,
``os.replace``, fsync of the folder). Folders that no tag names any more are deleted after that. A kill at any
moment therefore leaves every tag pointing at a complete checkpoint: the new one or the previous one.

Loading verifies sizes and SHA-256 digests from the manifest, so a truncated or corrupted file is reported by name
instead of being half-loaded; a checkpoint of another architecture or class count is reported with the mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as _safetensors_save
from torch import nn

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointError",
    "atomic_write_bytes",
    "capture_rng_state",
    "check_compatible",
    "damaged",
    "decode_state",
    "describe_checkpoint",
    "encode_state",
    "list_checkpoints",
    "open_checkpoint",
    "prune_checkpoints",
    "repair_best_tag",
    "resolve_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

FORMAT = "timm-recipes-checkpoint/1"
MODEL_FILE, EMA_FILE = "model.safetensors", "ema.safetensors"
STATE_JSON, STATE_TENSORS = "state.json", "state.safetensors"
RECIPE_FILE, MANIFEST_FILE = "recipe.yaml", "manifest.json"
_PREFIX, _TMP = "ckpt-", ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, or made for another model. The message names the file."""


# ---------------------------------------------------------------------------------------------- atomic files
def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows; os.replace is durable there
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``, fsync folder."""
    path = Path(path)
    tmp = path.with_name(f"{_TMP}{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], *, metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file's bytes for ``tensors`` (moved to the CPU, made contiguous)."""
    return _safetensors_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ pickle-free state codec
def encode_state(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tuples, numbers, strings, tensors, NumPy arrays) into JSON + tensors.

    Tensors and arrays are replaced by ``{"__tensor__": key}`` / ``{"__ndarray__": key}`` and collected into the
    returned dict (for a safetensors file); tuples become ``{"__tuple__": [...]}``, dicts whose keys are not all
    strings (e.g. an optimizer's ``{param_index: state}``) become ``{"__items__": [[key, value], ...]}``.

    Raises:
        TypeError: for a value of another type, naming where it is.
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(value: Any, where: str) -> Any:
        if isinstance(value, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = value.detach().cpu()  # serialised right away: no defensive copy needed
            return {"__tensor__": key}
        if isinstance(value, np.ndarray):
            key = f"t{len(tensors)}"
            tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
            return {"__ndarray__": key}
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, tuple):
            return {"__tuple__": [enc(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [enc(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: enc(v, f"{where}.{k}") for k, v in value.items()}
            return {"__items__": [[enc(k, where), enc(v, f"{where}[{k!r}]")] for k, v in value.items()]}
        raise TypeError(f"cannot store {type(value).__name__} at {where or 'the top level'} in a checkpoint state")

    return enc(obj, ""), tensors


def decode_state(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_state`."""
    if isinstance(tree, list):
        return [decode_state(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    for marker in ("__tensor__", "__ndarray__"):
        if marker in tree:
            key = tree[marker]
            if not isinstance(key, str) or key not in tensors:
                raise KeyError(f"tensor {key!r} referenced by the state is not in {STATE_TENSORS}")
            return tensors[key] if marker == "__tensor__" else tensors[key].numpy()
    if "__tuple__" in tree:
        return tuple(decode_state(v, tensors) for v in tree["__tuple__"])
    if "__items__" in tree:
        return {_hashable(decode_state(k, tensors)): decode_state(v, tensors) for k, v in tree["__items__"]}
    return {k: decode_state(v, tensors) for k, v in tree.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# ---------------------------------------------------------------------------------------------------- RNG
def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators (and CUDA's, when initialised)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back the states returned by :func:`capture_rng_state` (CUDA only when both sides have it)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------ saving
def _model_meta(model_name: str, num_classes: int) -> dict[str, str]:
    return {"format": "pt", "producer": FORMAT, "model": model_name, "num_classes": str(num_classes)}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_checkpoint(
    root: str | os.PathLike[str],
    *,
    model_state: Mapping[str, torch.Tensor],
    model_name: str,
    num_classes: int,
    epoch: int,
    step: int,
    training_state: Mapping[str, Any],
    recipe: Mapping[str, Any],
    ema_state: Mapping[str, torch.Tensor] | None = None,
    metrics: Mapping[str, Any] | None = None,
    tags: Sequence[str] = ("last",),
) -> Path:
    """Write one complete checkpoint under ``root`` atomically, point ``tags`` at it, then prune unreferenced ones.

    Args:
        root: The run's ``checkpoints/`` folder (created).
        model_state: The bare model's ``state_dict`` (no DDP / ``torch.compile`` prefixes).
        model_name: The timm model name (checked when loading).
        num_classes: The classifier's classes (checked when loading).
        epoch: Epochs completed (1 after the first epoch).
        step: Optimizer steps completed.
        training_state: Everything else needed to resume (optimizer, scheduler, scaler, EMA counters, RNG states,
            early-stopping state): nested dicts/lists/tuples of numbers, strings, tensors and NumPy arrays.
        recipe: The resolved recipe as a plain dict (saved as ``recipe.yaml``).
        ema_state: The EMA model's ``state_dict``, if any.
        metrics: Small JSON-able numbers to record in the manifest (e.g. validation accuracy).
        tags: Which tags (``"last"``, ``"best"``) to point at this checkpoint.

    Returns:
        The checkpoint's folder.
    """
    if not tags:
        raise ValueError("tags must name at least one tag ('last', 'best'): an untagged checkpoint is pruned at once")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"{_PREFIX}e{epoch:04d}-{uuid.uuid4().hex[:8]}"
    tmp = root / f"{_TMP}{name}"
    tmp.mkdir()
    try:
        meta = _model_meta(model_name, num_classes)
        tree, tensors = encode_state(dict(training_state))
        recipe_text = yaml.safe_dump(_plain(recipe), sort_keys=False, default_flow_style=None, width=120)
        contents = {
            MODEL_FILE: lambda: safetensors_bytes(model_state, metadata=meta),
            EMA_FILE: (lambda: safetensors_bytes(ema_state, metadata=meta)) if ema_state is not None else None,
            STATE_TENSORS: lambda: safetensors_bytes(tensors, metadata={"format": "pt", "producer": FORMAT}),
            STATE_JSON: lambda: json.dumps(tree).encode(),
            RECIPE_FILE: recipe_text.encode,
        }
        files = {}
        for fname, produce in contents.items():
            if produce is None:
                continue
            data = produce()  # serialised in memory: hashed without reading the file back
            _write_synced(tmp / fname, data)
            files[fname] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            del data
        manifest = {
            "format": FORMAT,
            "model": model_name,
            "num_classes": int(num_classes),
            "epoch": int(epoch),
            "step": int(step),
            "metrics": _plain(dict(metrics or {})),
            "files": files,
        }
        _write_synced(tmp / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
        _fsync_dir(tmp)
        os.replace(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)
    for tag in sorted(tags, key=lambda t: t != "best"):  # best first: a kill in between leaves last behind, never best
        tag_doc = {"format": FORMAT, "checkpoint": name, "epoch": int(epoch), "step": int(step)}
        atomic_write_bytes(root / f"{tag}.json", json.dumps(tag_doc, indent=1).encode())
    prune_checkpoints(root)
    return root / name


def _tag_targets(root: Path) -> set[str]:
    names = set()
    for tag_file in root.glob("*.json"):
        try:
            names.add(str(json.loads(tag_file.read_text())["checkpoint"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable tag protects nothing; open_checkpoint reports it by name
    return names


def prune_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Delete checkpoint folders that no tag names, and leftovers of interrupted writes. Returns what was deleted."""
    root = Path(root)
    keep = _tag_targets(root)
    removed = []
    for path in root.iterdir():
        stale = path.name.startswith(_TMP) or (
            path.is_dir() and path.name.startswith(_PREFIX) and path.name not in keep
        )
        if stale:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# ----------------------------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint folder. Weights and state are read on demand.

    Attributes:
        path: The checkpoint folder (``.../checkpoints/ckpt-e0007-…``).
        manifest: Its ``manifest.json`` (model, num_classes, epoch, step, metrics, files).
    """

    path: Path
    manifest: dict[str, Any]

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"])

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def epoch(self) -> int:
        return int(self.manifest["epoch"])

    @property
    def step(self) -> int:
        return int(self.manifest["step"])

    @property
    def has_ema(self) -> bool:
        return EMA_FILE in self.manifest["files"]

    @property
    def run_dir(self) -> Path:
        """The run folder this checkpoint belongs to (the parent of ``checkpoints/``)."""
        return self.path.parent.parent

    def recipe(self) -> dict[str, Any]:
        """The resolved recipe saved with the checkpoint, as a plain dict.

        Raises:
            CheckpointError: ``recipe.yaml`` missing, not YAML or not a mapping.
        """
        file = self.path / RECIPE_FILE
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise damaged(self.path, f"{RECIPE_FILE} cannot be read: {' '.join(str(err).split())}") from None
        if not isinstance(data, dict):
            raise damaged(self.path, f"{RECIPE_FILE} is not a recipe (a YAML mapping), got {type(data).__name__}")
        return data

    def weights(self, which: str = "model") -> dict[str, torch.Tensor]:
        """The raw (``"model"``) or EMA (``"ema"``) weights, on the CPU."""
        if which not in ("model", "ema"):
            raise ValueError(f"which must be 'model' or 'ema', got {which!r}")
        file = self.path / (MODEL_FILE if which == "model" else EMA_FILE)
        if which == "ema" and not self.has_ema:
            raise CheckpointError(f"checkpoint {self.path} has no EMA weights (trained with ema.enabled=false)")
        try:
            return load_file(str(file), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"checkpoint file {file} cannot be read: {err}") from err

    def training_state(self, required: Sequence[str] = ()) -> dict[str, Any]:
        """The optimizer, scheduler, scaler, EMA counters, RNG and loop state, tensors on the CPU.

        Args:
            required: Sections the caller reads; a missing one is reported as damage.

        Raises:
            CheckpointError: the state cannot be read, references a tensor that is not stored, or lacks a section.
        """
        try:
            tree = json.loads((self.path / STATE_JSON).read_text(encoding="utf-8"))
            tensors = load_file(str(self.path / STATE_TENSORS), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise damaged(self.path, f"its state cannot be read: {err}") from err
        try:
            state = decode_state(tree, tensors)
        except (KeyError, TypeError, ValueError) as err:
            raise damaged(self.path, f"{STATE_JSON} is damaged: {str(err).strip(chr(34) + chr(39))}") from None
        if not isinstance(state, dict):
            raise damaged(self.path, f"{STATE_JSON} is not a mapping of sections")
        missing = [key for key in required if key not in state]
        if missing:
            raise damaged(self.path, f"{STATE_JSON} lacks the section(s) {', '.join(missing)}")
        return state


def list_checkpoints(root: str | os.PathLike[str]) -> list[tuple[Path, int | None, list[str]]]:
    """The complete checkpoint folders of a ``checkpoints/`` folder: ``(folder, epoch, tags naming it)``, by epoch."""
    root = Path(root)
    tags: dict[str, list[str]] = {}
    for tag_file in sorted(root.glob("*.json")):
        try:
            tags.setdefault(str(json.loads(tag_file.read_text(encoding="utf-8"))["checkpoint"]), []).append(
                tag_file.stem
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    found = []
    for folder in sorted(p for p in root.glob(f"{_PREFIX}*") if (p / MANIFEST_FILE).is_file()):
        try:
            epoch = int(json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            epoch = None
        found.append((folder, epoch, tags.get(folder.name, [])))
    return sorted(found, key=lambda item: (item[1] is None, item[1] or 0))


def damaged(folder: str | os.PathLike[str], what: str) -> CheckpointError:
    """A :class:`CheckpointError` naming the checkpoint and the damage, offering the run's other checkpoints."""
    folder = Path(folder)
    others = [f for f in list_checkpoints(folder.parent) if f[0].name != folder.name] if folder.parent.is_dir() else []
    offer = ""
    if others:
        listed = ", ".join(
            f"{p} (epoch {e}{', ' + '/'.join(t) if t else ''})"
            for p, e, t in others[-3:]  # the latest three
        )
        offer = f"; other checkpoints of this run: {listed} (pass one of them to --resume, evaluate or export)"
    return CheckpointError(f"checkpoint {folder} is damaged: {what}{offer}")


def _read_pointer(tag_file: Path) -> Path:
    """The checkpoint folder a tag file names; it must be a ``ckpt-*`` folder right beside the tag file."""
    try:
        doc = json.loads(tag_file.read_text(encoding="utf-8"))
        name = doc["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint tag {tag_file} is corrupt or not a checkpoint tag: {err}") from err
    plain = isinstance(name, str) and name.startswith(_PREFIX) and Path(name).name == name and "\\" not in name
    target = tag_file.parent / str(name)
    if not plain or target.resolve().parent != tag_file.parent.resolve():
        raise CheckpointError(
            f"checkpoint tag {tag_file} names {name!r}, which is not a checkpoint folder inside {tag_file.parent}: "
            "a tag may only point at a ckpt-* folder of its own checkpoints/ folder"
        )
    if not (target / MANIFEST_FILE).exists():
        raise CheckpointError(f"checkpoint tag {tag_file} names {target.name}, which is missing or incomplete")
    return target


def _manifest_metrics(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        return {"epoch": int(manifest["epoch"]), **dict(manifest.get("metrics") or {})}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _reconciled_best(root: Path, best: Path | None) -> Path | None:
    """``best``, or ``last``'s checkpoint when its manifest says it is a newer best (a kill between the tag writes)."""
    if not (root / "last.json").is_file():
        return best
    try:
        last = _read_pointer(root / "last.json")
    except CheckpointError:
        return best
    info = _manifest_metrics(last)
    last_is_best = info.get("best_epoch") is not None and info.get("best_epoch") == info.get("epoch")
    if last_is_best and (best is None or _manifest_metrics(best).get("epoch", -1) < info["epoch"]):
        return last
    return best


def repair_best_tag(root: str | os.PathLike[str]) -> Path | None:
    """Rewrite ``best.json`` when the manifests say ``last``'s checkpoint is a newer best (:func:`resolve_checkpoint`).

    Returns the checkpoint ``best.json`` now names when it was rewritten, else ``None``. Called when a run resumes,
    so that the pair stays consistent on disk once the run moves on.
    """
    root = Path(root)
    tag_file = root / "best.json"
    try:
        best = _read_pointer(tag_file) if tag_file.exists() else None
    except CheckpointError:
        best = None
    chosen = _reconciled_best(root, best)
    if chosen is None or chosen == best:
        return None
    epoch = _manifest_metrics(chosen).get("epoch")
    doc = {"format": FORMAT, "checkpoint": chosen.name, "epoch": epoch, "repaired": True}
    atomic_write_bytes(tag_file, json.dumps(doc, indent=1).encode())
    return chosen


def resolve_checkpoint(path: str | os.PathLike[str], tag: str = "last") -> Path:
    """The checkpoint folder that ``path`` designates.

    ``path`` may be a checkpoint folder, a tag file (``last.json``/``best.json``), a ``checkpoints/`` folder or a run
    folder; for the last two, ``tag`` chooses the tag (``"last"`` or ``"best"``). A tag may only name a ``ckpt-*``
    folder beside it (never ``..``, an absolute path or a link out of the folder). When ``best.json`` lags behind
    ``last.json`` whose manifest records that epoch as the best (a kill between the two writes of an older version),
    ``best`` resolves to ``last``'s checkpoint, as the manifests say.

    Raises:
        FileNotFoundError: nothing at ``path``, or no such tag.
        CheckpointError: a corrupt tag, or one that points outside its ``checkpoints/`` folder.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.is_dir() and (path / MANIFEST_FILE).exists():
        return path
    if path.is_dir() and (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if not path.is_dir():
        return _read_pointer(path)
    tag_file = path / f"{tag}.json"
    if tag == "best":
        best = _read_pointer(tag_file) if tag_file.exists() else None
        chosen = _reconciled_best(path, best)
        if chosen is not None:
            return chosen
    if not tag_file.exists():
        raise FileNotFoundError(f"no checkpoint in {str(path)!r}: {tag_file.name} is missing")
    return _read_pointer(tag_file)


def describe_checkpoint(path: str | os.PathLike[str], tag: str = "last") -> str:
    """Which checkpoint ``path`` with ``tag`` designates, for a command to say what it used: folder, epoch, tags.

    ``best`` falls back to ``last`` for a run without one, as the commands do.
    """
    try:
        folder = resolve_checkpoint(path, tag)
    except FileNotFoundError:
        if tag != "best":
            raise
        folder, tag = resolve_checkpoint(path, "last"), "last (the run has no best)"
    epoch = _manifest_metrics(folder).get("epoch")
    tags = next((t for f, _, t in list_checkpoints(folder.parent) if f.name == folder.name), [])
    named = f", tags {'/'.join(tags)}" if tags else ""
    return f"{folder} (epoch {epoch}, chosen as {tag}{named})"


def open_checkpoint(path: str | os.PathLike[str], *, tag: str = "last", verify: bool = True) -> Checkpoint:
    """Open and (by default) verify a checkpoint: every file present, with the size and SHA-256 of the manifest.

    Args:
        path: A checkpoint folder, a tag file, a ``checkpoints/`` folder or a run folder (see ``tag``).
        tag: ``"last"`` or ``"best"``, when ``path`` is a ``checkpoints/`` or run folder.
        verify: Check the digests (reads every byte once).

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: a corrupt, truncated or foreign checkpoint (the message names the file).
    """
    folder = resolve_checkpoint(path, tag)
    manifest_path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
        files = manifest["files"]
        _ = manifest["model"], int(manifest["num_classes"]), int(manifest["epoch"]), int(manifest["step"])
        if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
            for v in files.values()
        ):
            raise ValueError("'files' must map each file name to its size and sha256")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise damaged(folder, f"{MANIFEST_FILE} is corrupt: {err}") from None
    for required in (MODEL_FILE, STATE_JSON, STATE_TENSORS, RECIPE_FILE):
        if required not in files:
            raise damaged(folder, f"{MANIFEST_FILE} does not list {required}")
    if verify:
        for fname, expected in files.items():
            file = folder / fname
            if Path(fname).name != fname or not file.is_file():
                raise damaged(folder, f"{fname} is missing")
            size = file.stat().st_size
            if size != expected["size"]:
                raise damaged(folder, f"{fname} is corrupt: {size} bytes, expected {expected['size']}")
            if _sha256(file) != expected["sha256"]:
                raise damaged(folder, f"{fname} is corrupt: its SHA-256 does not match the manifest")
    return Checkpoint(folder, manifest)


def check_compatible(
    checkpoint: Checkpoint, model: nn.Module, *, model_name: str, num_classes: int, which: str = "model"
) -> dict[str, torch.Tensor]:
    """Load and return the ``which`` weights after checking they fit ``model`` exactly.

    Raises:
        CheckpointError: naming the checkpoint, both architectures / class counts, and the first differing keys.
    """
    weights = checkpoint.weights(which)
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [
        f"{k}: {tuple(weights[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    details = "; ".join(
        part for part in (_few("missing", missing), _few("unexpected", unexpected), _few("shape", shapes)) if part
    )
    file = checkpoint.path / (MODEL_FILE if which == "model" else EMA_FILE)
    if checkpoint.model_name != model_name or checkpoint.num_classes != num_classes:
        raise CheckpointError(
            f"checkpoint {file} holds {checkpoint.model_name} with num_classes={checkpoint.num_classes}, which does "
            f"not fit {model_name} with num_classes={num_classes}" + (f" ({details})" if details else "")
        )
    if details:
        raise CheckpointError(f"checkpoint {file} does not fit the model {model_name}: {details}")
    return weights


def _few(label: str, items: list[str], n: int = 3) -> str:
    if not items:
        return ""
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return f"shape mismatches {items[:n]}{more}" if label == "shape" else f"{label} keys {items[:n]}{more}"
