"""Several processes, one run: DistributedDataParallel as launched by ``torchrun``.

Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training", VLDB 2020,
https://arxiv.org/abs/2006.15704 (DistributedDataParallel); the launcher is PyTorch's own ``torchrun``::

    torchrun --nproc_per_node=8 -m timm_recipes train --recipe resnet50_tv2 --set data.root=/data/imagenet

Each process (rank) reads ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` from its environment, joins the process group
(NCCL on CUDA, gloo on the CPU) and trains one replica on ``cuda:LOCAL_RANK``. What the trainer needs from that is the
:class:`Distributed` object below; with one process every method is the identity or a no-op.

The rules (also in the README):

* **Batch and learning rate.** ``data.batch_size`` is per process; the global batch is
  ``batch_size × optim.accum_steps × WORLD_SIZE``. ``optim.lr`` is the learning rate of the global batch as given, or,
  with ``optim.lr_base_batch = B``, the rate per B images, scaled linearly to the global batch. Never per GPU.
  The EMA decay is adjusted with the world size (:func:`~timm_recipes.train.ema.adjust_ema_decay`).
* **Data.** Every epoch a permutation of the training set drawn from ``(run.seed, epoch)`` is cut into global batches;
  rank r trains on the r-th block of ``batch_size`` images of each (:class:`ShardedTrainSampler`): the shards change
  every epoch, no image is repeated within one, and ``W`` processes with batch ``b`` see exactly the batches of one
  process with batch ``b`` and ``optim.accum_steps = W``. Evaluation gives rank r the images r, r + W, r + 2W, …
  (:class:`StridedEvalSampler`, no padding) and sums the counts over the ranks: the accuracy is exact.
* **Agreement.** Gradients are averaged by DDP, so the parameters stay bit-identical; at the end of every epoch the
  BatchNorm statistics (and those of the EMA copy) are averaged over the ranks (timm's ``--dist-bn reduce``) and a
  digest of every tensor is compared (:meth:`Distributed.check_in_sync`), so the weights that rank 0 evaluates and
  saves are those of every rank. ``run.sync_bn`` turns BatchNorm into ``SyncBatchNorm`` (CUDA only, as in PyTorch).
* **Stochastic depth in "batch" mode** skips whole residual branches; every rank must skip the same ones or DDP waits
  for gradients that never come. :class:`DepthDraws` makes the draws a function of ``(seed, epoch, optimizer step)``,
  equal on every rank and on every micro-batch of an accumulated step, and the model is wrapped with
  ``find_unused_parameters=True`` (``static_graph`` cannot be used: the set of used parameters changes every step).
* **Writing.** Only rank 0 writes (recipe, metrics, curves, checkpoints) and logs progress; the others wait at a
  barrier after each checkpoint. The run folder must be on a file system that every node sees (for ``--resume`` and
  the final evaluation of the best checkpoint), as with torchvision's reference scripts.
* **Failures.** Every collective has a timeout (``TIMM_RECIPES_DIST_TIMEOUT`` seconds, default 1800): when a rank
  dies or hangs the others stop with an error that says so instead of waiting forever, and ``torchrun`` stops the
  remaining workers as soon as one fails. Checkpoints are written atomically, so ``--resume`` continues the run.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.utils.data import Dataset, Sampler

from timm_recipes.layers import set_stochastic_depth_generator, stochastic_depth_modules

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "DepthDraws",
    "Distributed",
    "ShardedTrainSampler",
    "StridedEvalSampler",
    "dist_timeout",
    "resolve_device",
]

_LOG = logging.getLogger("timm_recipes.train")

TIMEOUT_ENV = "TIMM_RECIPES_DIST_TIMEOUT"
"""Environment variable: seconds any collective (and the rendezvous) may wait for the other ranks."""
DEFAULT_TIMEOUT_S = 1800.0
"""PyTorch's own default for gloo: long enough for rank 0 to write a large checkpoint while the others wait."""

# Words of the errors gloo, NCCL and the TCP store raise when a peer is gone or does not answer.
_PEER_FAILURE_MARKERS = (
    "gloo",
    "nccl",
    "connection closed",
    "connection reset",
    "timed out",
    "timeout",
    "pair closure",
)


def _env_int(name: str, default: int | None, *, low: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise ValueError(f"{name} is not set: start every process with torchrun (or set RANK, WORLD_SIZE, ...)")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < low:
        raise ValueError(f"environment variable {name} must be >= {low}, got {value}")
    return value


def dist_timeout(timeout_s: float | None = None) -> float:
    """The collective timeout in seconds: ``timeout_s``, else ``$TIMM_RECIPES_DIST_TIMEOUT``, else 1800.

    Raises:
        ValueError: A value that is not a positive finite number (naming where it came from).
    """
    where = "timeout_s"
    if timeout_s is None:
        raw = os.environ.get(TIMEOUT_ENV)
        if raw is None:
            return DEFAULT_TIMEOUT_S
        where = f"environment variable {TIMEOUT_ENV}"
        try:
            timeout_s = float(raw)
        except ValueError:
            raise ValueError(f"{where} must be a number of seconds > 0, got {raw!r}") from None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < math.inf:
        raise ValueError(f"{where} must be a number of seconds > 0, got {timeout_s!r}")
    return float(timeout_s)


def resolve_device(name: str, dist: Distributed | None = None) -> torch.device:
    """The device of this process for ``run.device``.

    ``"auto"`` is this rank's GPU (``cuda:LOCAL_RANK``) when CUDA is available, else the CPU. With several processes
    ``"cuda"`` also means ``cuda:LOCAL_RANK``, and an explicit ``"cuda:N"`` is refused (every rank would use GPU N).

    Raises:
        ValueError: An unknown device, CUDA asked for but absent, or ``LOCAL_RANK`` not below the number of GPUs
            (more processes per node than GPUs: lower ``--nproc_per_node``).
    """
    local_rank, world_size = (dist.local_rank, dist.world_size) if dist is not None else (0, 1)
    try:
        device = torch.device("cuda" if name == "auto" else name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"run.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        if name == "auto":
            return torch.device("cpu")
        raise ValueError(f"run.device={name!r} but CUDA is not available on this machine (use 'auto' or 'cpu')")
    if device.type != "cuda":
        return device
    if world_size == 1:
        return device if device.index is not None or name != "auto" else torch.device("cuda", 0)
    if device.index is not None:
        raise ValueError(
            f"run.device={name!r} with WORLD_SIZE={world_size}: every process would use the same GPU; use 'auto' or "
            "'cuda' (process LOCAL_RANK=k uses cuda:k)"
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(
            f"LOCAL_RANK={local_rank} but this node has {count} CUDA device(s): --nproc_per_node must be at most "
            f"{count} (one process per GPU)"
        )
    return torch.device("cuda", local_rank)


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


# ================================================================================================ samplers
class ShardedTrainSampler(Sampler[int]):
    """Rank ``rank``'s share of one seeded permutation per epoch, cut into global batches.

    The permutation of epoch ``e`` is the one the single-process loader draws for ``(seed, e)`` (the same derived
    seed, so one process with this sampler orders the data as the loader's own shuffle does). It is truncated to a
    whole number of global batches of ``world_size × batch_size`` images (the remainder, a different one every epoch,
    is left out, as ``drop_last`` does on one process), and of global batch k rank r gets the images at positions
    ``k·W·b + r·b … k·W·b + (r+1)·b − 1``. Hence every rank has the same number of batches, no image appears twice in
    an epoch, and the union of the ranks' k-th batches is the k-th batch of one process with batch ``W·b``.

    Args:
        num_samples: Size of the training set.
        rank: This process's rank in ``[0, world_size)``.
        world_size: Number of processes.
        batch_size: Images per process and batch.
        seed: The run's seed.
    """

    def __init__(self, num_samples: int, *, rank: int, world_size: int, batch_size: int, seed: int) -> None:
        for label, value, low in (("num_samples", num_samples, 0), ("world_size", world_size, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        self.num_samples, self.rank, self.world_size = num_samples, rank, world_size
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    @property
    def global_batches(self) -> int:
        """Global batches per epoch (each rank yields this many blocks of ``batch_size`` indices)."""
        return self.num_samples // (self.world_size * self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.global_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        from timm_recipes.data.datasets import _SHUFFLE
        from timm_recipes.data.datasets import _derive_seed as loader_seed

        g = torch.Generator().manual_seed(loader_seed(self.seed, _SHUFFLE, self.epoch))
        order = torch.randperm(self.num_samples, generator=g)
        blocks = order[: self.global_batches * self.world_size * self.batch_size].view(
            -1, self.world_size, self.batch_size
        )
        return iter(blocks[:, self.rank].reshape(-1).tolist())


class StridedEvalSampler(Sampler[int]):
    """Evaluation shard of rank r: the images r, r + W, r + 2W, … in order, without padding.

    Unlike ``DistributedSampler`` (which pads the last shard with repeated images), every image is evaluated by
    exactly one rank; the ranks' sums of losses and correct predictions add up to those of one process.
    """

    def __init__(self, num_samples: int, *, rank: int, world_size: int) -> None:
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}")
        self.num_samples, self.rank, self.world_size = num_samples, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples, self.world_size))


# ================================================================================================ stochastic depth
class DepthDraws:
    """Stochastic depth ``"batch"`` draws seeded from ``(seed, epoch, optimizer step)``.

    Huang et al., "Deep Networks with Stochastic Depth", https://arxiv.org/abs/1603.09382: one draw per block and
    mini-batch. Here the mini-batch is the global batch of one optimizer step: a forward pre-hook on the model reseeds
    one CPU generator, shared by all :class:`~timm_recipes.layers.StochasticDepth` layers, before every training
    forward, from the epoch and the index of the optimizer step within it. Every rank and every micro-batch of an
    accumulated step therefore skips the same blocks (so DDP's gradient buckets stay consistent across ranks), and a
    resumed run draws what the uninterrupted run drew.

    Use :meth:`attach`; call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, model: nn.Module, *, seed: int, accum_steps: int = 1) -> None:
        if isinstance(accum_steps, bool) or not isinstance(accum_steps, int) or accum_steps < 1:
            raise ValueError(f"accum_steps must be an integer >= 1, got {accum_steps!r}")
        self.seed, self.accum_steps = int(seed), accum_steps
        self.epoch, self.forwards = 0, 0
        self.generator = torch.Generator()
        self.layers = set_stochastic_depth_generator(model, self.generator)
        self._handle = model.register_forward_pre_hook(self._before_forward)

    @classmethod
    def attach(cls, model: nn.Module, *, seed: int, accum_steps: int = 1) -> DepthDraws | None:
        """Attach to ``model`` when it has ``"batch"``-mode layers that can drop a block, else return ``None``."""
        if not any(m.mode == "batch" and m.survival_prob < 1.0 for m in stochastic_depth_modules(model)):
            return None
        return cls(model, seed=seed, accum_steps=accum_steps)

    def set_epoch(self, epoch: int) -> None:
        """Start the draws of ``epoch`` (from its first optimizer step)."""
        self.epoch, self.forwards = int(epoch), 0

    def _before_forward(self, module: nn.Module, args: Any) -> None:
        if module.training:
            self.generator.manual_seed(_derive_seed(self.seed, 0x5D, self.epoch, self.forwards // self.accum_steps))
            self.forwards += 1

    def detach(self) -> None:
        """Remove the hook and give the layers back the global RNG."""
        self._handle.remove()
        for layer in self.layers:
            layer.generator = None


# ================================================================================================ the process group
class _MainRankOnly(logging.Filter):
    """Drops progress messages (below WARNING) on ranks other than 0."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_QUIET = _MainRankOnly()


@dataclass
class Distributed:
    """The process group as the trainer sees it. With one process every method is the identity or a no-op.

    Li et al., "PyTorch Distributed", https://arxiv.org/abs/2006.15704. Built by :meth:`from_env`; used as a context
    manager around a run, it tears the group down at the end and turns a lost peer into a clear error.

    Attributes:
        rank: This process's global rank.
        local_rank: Its rank on this node (its GPU index).
        world_size: Number of processes.
        device: The device this process trains on.
        timeout_s: Seconds a collective waits for the other ranks.
        run_dir: The run folder, once known (named in failure messages).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    timeout_s: float = DEFAULT_TIMEOUT_S
    run_dir: Path | None = None
    _owns_group: bool = field(default=False, repr=False)
    _quiets_log: bool = field(default=False, repr=False)

    # -------------------------------------------------------------------------------------------- setup, teardown
    @classmethod
    def from_env(cls, device: str = "auto", *, timeout_s: float | None = None) -> Distributed:
        """Read ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` (as ``torchrun`` sets them) and join the process group.

        With ``WORLD_SIZE`` unset or 1 nothing is initialised. Otherwise this process's device is chosen
        (:func:`resolve_device`), then the default process group is created with ``init_method="env://"`` (NCCL on
        CUDA, gloo on the CPU) and the timeout, unless the caller already created one, which is then used as it is.

        Args:
            device: ``run.device``.
            timeout_s: Collective timeout (default: :func:`dist_timeout`).

        Raises:
            ValueError: Inconsistent environment variables, or a device this rank cannot use (named).
            RuntimeError: The rendezvous at ``MASTER_ADDR:MASTER_PORT`` failed within the timeout.
        """
        timeout = dist_timeout(timeout_s)
        world_size = _env_int("WORLD_SIZE", 1, low=1)
        if world_size == 1:
            probe = cls(timeout_s=timeout)
            probe.device = resolve_device(device, probe)
            return probe
        rank = _env_int("RANK", None, low=0)
        local_rank = _env_int("LOCAL_RANK", rank, low=0)
        if rank >= world_size:
            raise ValueError(f"environment variable RANK={rank} must be below WORLD_SIZE={world_size}")
        self = cls(rank=rank, local_rank=local_rank, world_size=world_size, timeout_s=timeout)
        self.device = resolve_device(device, self)
        train_log = logging.getLogger("timm_recipes.train")
        if rank != 0 and _QUIET not in train_log.filters:
            train_log.addFilter(_QUIET)
            self._quiets_log = True
        try:
            if not tdist.is_initialized():
                self._init_group()
            elif (tdist.get_rank(), tdist.get_world_size()) != (rank, world_size):
                raise ValueError(
                    f"a process group is already initialised as rank {tdist.get_rank()} of {tdist.get_world_size()}, "
                    f"but the environment says RANK={rank}, WORLD_SIZE={world_size}"
                )
        except BaseException:
            self.close()
            raise
        return self

    def _init_group(self) -> None:
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if missing:
            raise ValueError(
                f"WORLD_SIZE={self.world_size} but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                "not set: launch the processes with torchrun (torchrun --nproc_per_node=N -m timm_recipes train ...)"
            )
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        try:
            tdist.init_process_group(
                backend,
                init_method="env://",
                rank=self.rank,
                world_size=self.world_size,
                timeout=datetime.timedelta(seconds=self.timeout_s),
                **({"device_id": self.device} if self.device.type == "cuda" else {}),
            )
        except (RuntimeError, ValueError) as err:  # DistNetworkError, DistStoreError, ... are RuntimeErrors
            raise RuntimeError(
                f"rank {self.rank} of {self.world_size} could not join the process group at {where} within "
                f"{self.timeout_s:g} s ({TIMEOUT_ENV}): is MASTER_ADDR reachable from this node, MASTER_PORT open, "
                f"and did every process start? ({_first_line(err)})"
            ) from err
        self._owns_group = True
        _LOG.info("process group: %s, %d processes, rendezvous at %s, timeout %g s", backend, self.world_size, where,
                  self.timeout_s)  # fmt: skip

    def close(self) -> None:
        """Tear down the process group (if this object created it) and restore rank-0-only logging."""
        if self._quiets_log:
            logging.getLogger("timm_recipes.train").removeFilter(_QUIET)
            self._quiets_log = False
        if self._owns_group and tdist.is_initialized():
            tdist.destroy_process_group()
        self._owns_group = False

    def __enter__(self) -> Distributed:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        if exc is not None and self.world_size > 1 and self.is_peer_failure(exc):
            raise RuntimeError(self.failure_message(exc)) from exc

    # -------------------------------------------------------------------------------------------- failures
    @staticmethod
    def is_peer_failure(err: BaseException) -> bool:
        """Whether ``err`` is a collective that failed because another rank died, hung or became unreachable."""
        if isinstance(err, tdist.DistError):
            return True
        return isinstance(err, RuntimeError) and any(m in str(err).lower() for m in _PEER_FAILURE_MARKERS)

    def failure_message(self, err: BaseException) -> str:
        """What a rank says when a collective fails: which rank, why that happens, and how to continue."""
        resume = f"--resume {self.run_dir}" if self.run_dir is not None else "--resume RUN_FOLDER"
        return (
            f"rank {self.rank} of {self.world_size}: a collective operation failed ({_first_line(err)}). Another "
            f"process died (killed, out of memory, node failure) or did not answer within {self.timeout_s:g} s "
            f"({TIMEOUT_ENV}); see its log. The checkpoints written so far are intact: relaunch the same torchrun "
            f"command with {resume} to continue"
        )

    # -------------------------------------------------------------------------------------------- the trainer's hooks
    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, metrics and logs."""
        return self.rank == 0

    def wrap(
        self, model: nn.Module, device: torch.device, *, find_unused_parameters: bool = False, sync_bn: bool = False
    ) -> nn.Module:
        """The model as trained: ``DistributedDataParallel(model)`` with several processes, else ``model``.

        Args:
            model: The bare model on ``device``; its BatchNorm layers are converted in place with ``sync_bn``.
            device: This rank's device.
            find_unused_parameters: Needed when a forward may leave parameters unused (stochastic depth "batch").
            sync_bn: Replace BatchNorm by ``SyncBatchNorm`` (statistics over the global batch).

        Raises:
            ValueError: ``sync_bn`` on a CPU run (PyTorch's ``SyncBatchNorm`` runs on GPUs only).
        """
        if self.world_size == 1:
            return model
        if sync_bn:
            if device.type != "cuda":
                raise ValueError(
                    "run.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm supports GPU inputs only); set "
                    "run.sync_bn=false on the CPU"
                )
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters,
        )

    def train_sampler(self, dataset: Dataset, *, seed: int, batch_size: int) -> Sampler | None:
        """A :class:`ShardedTrainSampler` for this rank (``None`` with one process: the loader shuffles itself)."""
        if self.world_size == 1:
            return None
        return ShardedTrainSampler(len(dataset), rank=self.rank, world_size=self.world_size, batch_size=batch_size,
                                   seed=seed)  # fmt: skip

    def eval_sampler(self, dataset: Dataset) -> Sampler | None:
        """A :class:`StridedEvalSampler` for this rank (``None`` with one process: all images in order)."""
        if self.world_size == 1:
            return None
        return StridedEvalSampler(len(dataset), rank=self.rank, world_size=self.world_size)

    @property
    def reduce_sum(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """All-reduce (sum) of a tensor across ranks, or ``None`` with one process."""
        if self.world_size == 1:
            return None

        def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
            out = tensor.clone()
            tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
            return out

        return reduce_sum

    def sync_buffers(self, module: nn.Module) -> None:
        """Average the floating-point buffers (BatchNorm statistics) over the ranks; others come from rank 0."""
        if self.world_size == 1:
            return
        with torch.no_grad():
            for buffer in module.buffers():
                if buffer.is_floating_point():
                    tdist.all_reduce(buffer, op=tdist.ReduceOp.SUM)
                    buffer.div_(self.world_size)
                else:
                    tdist.broadcast(buffer, src=0)

    def check_in_sync(self, module: nn.Module, what: str) -> None:
        """Compare a SHA-256 digest of every parameter and buffer of ``module`` across the ranks.

        Raises:
            RuntimeError: On every rank at once, naming the first tensor whose bytes differ between ranks.
        """
        if self.world_size == 1:
            return
        names, digests = [], []
        for name, tensor in module.state_dict().items():
            names.append(name)
            raw = hashlib.sha256(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            digests.append(int.from_bytes(raw.digest()[:8], "little", signed=True))
        mine = torch.tensor(digests, dtype=torch.int64, device=self.device)
        everyone = [torch.empty_like(mine) for _ in range(self.world_size)]
        tdist.all_gather(everyone, mine)
        for rank, theirs in enumerate(everyone):
            differ = (theirs != everyone[0]).nonzero().flatten().tolist()
            if differ:
                raise RuntimeError(
                    f"the ranks disagree on the {what}: {names[differ[0]]} on rank {rank} differs from rank 0 "
                    f"({len(differ)} tensor(s) differ)"
                )

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects only: paths, numbers, strings)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank (the others wait here while rank 0 writes a checkpoint)."""
        if self.world_size > 1:
            tdist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
