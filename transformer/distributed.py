"""Data-parallel training with ``torch.distributed``: the pieces of chapter 14.

Data parallelism runs one copy of the model per process (a *rank*). Every rank
reads a different shard of each batch, computes its own gradients, and before the
optimizer step the gradients are averaged across ranks by an *all-reduce*, so every
copy takes the same step and the copies never drift apart. PyTorch's
``DistributedDataParallel`` (Li et al., 2020) does the averaging while the backward
pass is still running; this module supplies what sits around it:

* :func:`init_distributed` reads the rank and world size that ``torchrun`` puts in
  the environment and joins the process group (gloo on CPU, NCCL on GPU);
* :class:`WindowShards` deals the training windows of chapter 10's token stream to
  the ranks with a ``DistributedSampler`` and remembers its position, so a resumed
  run reads exactly the batches it would have read;
* :func:`micro_step` skips the all-reduce on every micro-step of gradient
  accumulation but the last, over the forward pass *and* the backward pass;
* :func:`make_optimizer` builds AdamW, or its ZeRO-1 form that keeps each rank's
  share of the optimizer state only (Rajbhandari et al., 2020);
* :func:`spawn` runs a function in several local processes with a deadline, which
  is how the tests and the chapter run two ranks on one CPU.

Shape letters: B windows per micro-batch, T block length, N the token stream.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from transformer.lm import shifted_targets

__all__ = [
    "DistInfo",
    "WindowDataset",
    "WindowShards",
    "all_gather",
    "all_reduce_mean",
    "cleanup",
    "init_distributed",
    "make_optimizer",
    "micro_step",
    "optimizer_state_bytes",
    "spawn",
    "unwrap",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among ``world_size`` and its device.

    Attributes:
        rank: this process's number, 0 .. world_size - 1 (rank 0 logs and saves).
        world_size: how many processes train together (1: no process group).
        local_rank: the rank within this machine, which picks the GPU.
        device: the device this rank trains on.
        backend: ``"gloo"`` or ``"nccl"``, or ``None`` without a process group.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one that prints and writes files."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def init_distributed(
    device: str = "auto", init_method: str | None = None, timeout_s: float = 60.0
) -> DistInfo:
    """Join the process group that ``torchrun`` (or :func:`spawn`) set up.

    ``torchrun`` starts one process per rank and gives each ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its
    environment. Without them (or with a world of one) the run is a plain
    single-process run and no process group is made. The backend follows the
    device: NCCL for CUDA, gloo for the CPU.

    Args:
        device: ``"auto"`` (CUDA when there is one, else CPU), ``"cpu"`` or ``"cuda"``.
        init_method: where the ranks meet, e.g. ``"file:///tmp/store"``; default the
            ``env://`` address ``torchrun`` provides.
        timeout_s: how long collective operations (joining included) may wait for
            the other ranks before failing instead of hanging.

    Raises:
        ValueError: a malformed rank, or ``device="cuda"`` without a GPU.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no GPU is available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} does not fit WORLD_SIZE={world}")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world == 1:
        return DistInfo(0, 1, 0, dev, None)
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend,
            init_method=init_method or "env://",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=timeout_s),
        )
    return DistInfo(rank, world, local, dev, backend)


def cleanup() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over all ranks (itself without a process group)."""
    if not dist.is_initialized():
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def all_gather(obj: Any) -> list[Any]:
    """``obj`` from every rank, in rank order (``[obj]`` without a process group)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a ``DistributedDataParallel`` or compiled wrapper."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # what torch.compile returns
        if isinstance(model, DistributedDataParallel):
            inner = model.module
        wrapped = isinstance(model, DistributedDataParallel) or inner is not None
        if not wrapped:
            return model
        assert isinstance(inner, nn.Module)
        model = inner


def micro_step(model: nn.Module, last: bool) -> contextlib.AbstractContextManager[Any]:
    """The context to run one accumulation micro-step in: forward *and* backward.

    DDP all-reduces the gradients during every backward pass. With gradient
    accumulation only the last micro-step needs it; on the others
    ``model.no_sync()`` keeps the gradients local. The context must cover the
    forward pass too: DDP decides at forward time whether the coming backward
    will synchronise, so a flag set only around ``backward()`` comes too late.

    Args:
        model: the (possibly DDP-wrapped) model.
        last: whether this is the final micro-step of the optimizer step.
    """
    if not last and isinstance(model, DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


class WindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Every window of ``block_size + 1`` tokens of a stream, by start offset.

    Item ``i`` is ``shifted_targets(ids[i : i + block_size + 1])``, the same
    windows that chapter 10's ``lm_batches`` draws at random; a sampler decides
    the order.

    Shape:
        ids: (N,) -> item: inputs (T,), targets (T,)
    """

    def __init__(self, ids: torch.Tensor, block_size: int) -> None:
        if ids.dim() != 1:
            shape = tuple(ids.shape)
            raise ValueError(f"expected a 1-D token stream, got shape {shape}")
        if block_size < 1 or ids.numel() <= block_size:
            raise ValueError(
                f"a stream of {ids.numel()} tokens has no window of block_size "
                f"{block_size} (it needs at least {block_size + 1} tokens)"
            )
        self.ids, self.block_size = ids, block_size

    def __len__(self) -> int:
        return self.ids.numel() - self.block_size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.ids[i : i + self.block_size + 1].long()  # (T + 1,)
        return shifted_targets(window)  # (T,), (T,)

    def batch(self, starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (B, T) of the windows starting at ``starts``."""
        offsets = torch.arange(self.block_size + 1)  # (T + 1,)
        windows = self.ids[torch.tensor(starts)[:, None] + offsets].long()  # (B, T + 1)
        return shifted_targets(windows)  # (B, T), (B, T)


class WindowShards:
    """This rank's shard of the training windows, with a position to resume from.

    A ``DistributedSampler`` shuffles the windows with a seed and the epoch
    number, then gives rank ``r`` every ``world_size``-th of them starting at
    ``r``. All ranks draw the same permutation without talking to each other,
    and their shards never overlap. At world size W, the W micro-batches of size
    B that the ranks read at one step hold the same windows as the first W * B of
    one process's shuffled list: two ranks at batch B see what one process sees
    at batch 2B.

    The position (epoch and windows consumed) is all a checkpoint needs: the
    permutation is a function of ``seed`` and ``epoch``, so :meth:`load_state_dict`
    puts the reader back exactly where it was.

    Args:
        dataset: the windows.
        rank, world_size: this rank and the number of ranks.
        seed: seeds the shuffle (the same on every rank).
    """

    def __init__(
        self, dataset: WindowDataset, rank: int = 0, world_size: int = 1, seed: int = 0
    ) -> None:
        self.dataset = dataset
        self.sampler: DistributedSampler[Any] = DistributedSampler(
            dataset,
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.epoch, self.position = 0, 0
        self._order: list[int] | None = None

    def _shard(self) -> list[int]:
        if self._order is None:
            self.sampler.set_epoch(self.epoch)
            self._order = list(iter(self.sampler))
        return self._order

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``batch_size`` windows of this shard, inputs and targets (B, T).

        A batch never straddles two epochs: when fewer windows than
        ``batch_size`` are left, the next epoch's permutation begins.
        """
        order = self._shard()
        if batch_size > len(order):
            raise ValueError(f"batch_size {batch_size} exceeds the shard {len(order)}")
        if self.position + batch_size > len(order):
            self.epoch, self.position, self._order = self.epoch + 1, 0, None
            order = self._shard()
        starts = order[self.position : self.position + batch_size]
        self.position += batch_size
        return self.dataset.batch(starts)

    def state_dict(self) -> dict[str, int]:
        """The reading position: ``{"epoch", "position"}``."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a position saved by :meth:`state_dict`."""
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = None


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.0, zero: bool = False
) -> torch.optim.Optimizer:
    """AdamW over ``model``'s parameters, optionally sharded across ranks (ZeRO-1).

    Adam keeps two numbers per parameter (the running mean and mean square of its
    gradient), twice the model's size. ``ZeroRedundancyOptimizer`` partitions
    the parameters among the ranks: each keeps the Adam state of its own share
    only, updates that share, and broadcasts the result, so the state per rank
    falls to about 1/W of the whole.

    Args:
        model: the model (its parameters are shared by the DDP wrapper).
        lr: peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        zero: partition the optimizer state (needs a process group).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs: dict[str, Any] = dict(lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    if zero:
        if not dist.is_initialized():
            raise ValueError("zero=True shards across ranks: run under torchrun")
        from torch.distributed.optim import ZeroRedundancyOptimizer

        adamw = torch.optim.AdamW
        return ZeroRedundancyOptimizer(params, optimizer_class=adamw, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of tensors this rank's optimizer keeps in its state (Adam's moments).

    For a ``ZeroRedundancyOptimizer`` this is the local shard's state.
    """
    inner = getattr(optimizer, "optim", optimizer)  # ZeRO wraps a local optimizer
    total = 0
    for state in inner.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                # FSDP's sharded tensors count their local part
                local = value.to_local() if hasattr(value, "to_local") else value
                total += local.numel() * local.element_size()
    return total


def _spawn_entry(
    local_rank: int,
    fn: Callable[..., Any],
    world_size: int,
    store: str,
    args: tuple[Any, ...],
) -> None:
    rank = str(local_rank)
    os.environ.update(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=str(world_size))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    fn(f"file://{store}", *args)


def spawn(
    fn: Callable[..., Any],
    world_size: int,
    store: str,
    args: tuple[Any, ...] = (),
    timeout_s: float = 120.0,
) -> None:
    """Run ``fn(init_method, *args)`` in ``world_size`` new processes, or fail in time.

    Each process gets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` as ``torchrun``
    would set them, and a ``file://`` address where the ranks meet (a file store:
    no network port that could clash). If any process fails, or they are not done
    within ``timeout_s``, the others are stopped and an error is raised; nothing
    hangs.

    Args:
        fn: a module-level function (it is pickled by name).
        world_size: number of processes.
        store: a path for the file store; it must not exist yet.
        args: further arguments for ``fn``.
        timeout_s: deadline for all processes together.

    Raises:
        TimeoutError: the processes did not finish in time.
    """
    if os.path.exists(store):
        raise ValueError(f"the file store {store!r} exists already; use a fresh path")
    context = mp.start_processes(
        _spawn_entry,
        args=(fn, world_size, store, args),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{world_size} processes not done in {timeout_s} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
