"""Data-parallel training on CPU with two gloo processes (chapter 14).

Every multi-process test meets at a file store (no port that could clash), has a
deadline on the processes and on the test itself, and sets ``GLOO_SOCKET_IFNAME=lo``,
so none can hang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from transformer.checkpoint import load_checkpoint
from transformer.distributed import (
    WindowDataset,
    WindowShards,
    init_distributed,
    make_optimizer,
    micro_step,
    optimizer_state_bytes,
    spawn,
)
from transformer.train import TrainConfig, run, run_spawned

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")

TINY = TrainConfig(
    d_model=32,
    n_heads=2,
    n_layers=2,
    d_ff=64,
    block_size=16,
    batch_size=4,
    accum=2,
    steps=3,
    warmup=2,
    lr=1e-3,
    eval_blocks=0,
    log_every=100,
    device="cpu",
)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_ranks_shard_the_windows_of_one_process():
    data = WindowDataset(torch.arange(200) % 256, block_size=8)
    one = WindowShards(data, 0, 1, seed=3)
    ranks = [WindowShards(data, r, 2, seed=3) for r in range(2)]
    for _ in range(3):
        x1, _ = one.next_batch(8)
        x2 = torch.cat([r.next_batch(4)[0] for r in ranks])
        assert sorted(map(tuple, x1.tolist())) == sorted(map(tuple, x2.tolist()))
    a, b = ranks[0].next_batch(4)[0], ranks[1].next_batch(4)[0]
    assert not set(map(tuple, a.tolist())) & set(map(tuple, b.tolist()))


def test_shards_resume_at_their_position_across_epochs():
    data = WindowDataset(torch.arange(40) % 256, block_size=4)
    shards = WindowShards(data, 0, 1, seed=0)
    for _ in range(5):  # 36 windows, 8 per batch: the 5th batch starts epoch 1
        shards.next_batch(8)
    saved = shards.state_dict()
    assert saved["epoch"] == 1
    expected = shards.next_batch(8)[0]
    again = WindowShards(data, 0, 1, seed=0)
    again.load_state_dict(saved)
    assert torch.equal(again.next_batch(8)[0], expected)


def test_window_dataset_refuses_a_short_stream():
    with pytest.raises(ValueError, match="needs at least 9 tokens"):
        WindowDataset(torch.arange(5), block_size=8)


def test_init_without_torchrun_is_a_single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.backend) == (0, 1, None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="does not fit"):
        init_distributed("cpu")
    with pytest.raises(ValueError, match="device must be"):
        init_distributed("tpu")


def test_zero_needs_a_process_group():
    with pytest.raises(ValueError, match="torchrun"):
        make_optimizer(torch.nn.Linear(2, 2), lr=1e-3, zero=True)


@pytest.mark.timeout(150)
def test_ddp_and_zero_match_one_process_on_the_combined_batch(tmp_path):
    """2 ranks x 2 micro-batches of 4 == 1 process x 16 windows, to 1e-6."""
    exact = replace(TINY, precision="fp64")  # float32 sums differ in their last bits
    single = run(replace(exact, batch_size=16, accum=1))
    ddp, zero = run_spawned([exact, replace(exact, zero=True)], 2, tmp_path, 120)
    for result in (*ddp, *zero):
        assert result["world_size"] == 2
        assert _max_diff(result["params"], single["params"]) < 1e-6
        gaps = [abs(a - b) for a, b in zip(result["losses"], single["losses"])]
        assert max(gaps) < 1e-6
    # ZeRO: each rank holds about half of the Adam state, measured
    full = single["optimizer_state_bytes"]
    plain = [r["optimizer_state_bytes"] for r in ddp]
    shards = [r["optimizer_state_bytes"] for r in zero]
    assert plain == [full, full]
    assert sum(shards) == full
    assert all(0.4 * full <= s <= 0.6 * full for s in shards), (shards, full)


def _count_allreduces(init_method: str, folder: str) -> None:
    """One rank: 2 optimizer steps of 4 micro-steps, counting gradient all-reduces."""
    info = init_distributed("cpu", init_method)
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(4, 2))
    calls = []

    def hook(state, bucket):  # no annotations: DDP checks them against its own types
        calls.append(1)
        fut = torch.distributed.all_reduce(bucket.buffer(), async_op=True).get_future()
        return fut.then(lambda f: f.value()[0] / 2)

    model.register_comm_hook(None, hook)
    counts = []
    for sync_forward in (True, False):
        calls.clear()
        for _ in range(2):
            for micro in range(4):
                last = micro == 3
                x = torch.randn(3, 4)
                if sync_forward:  # right: no_sync around forward and backward
                    with micro_step(model, last):
                        model(x).sum().backward()
                else:  # wrong: the forward runs outside no_sync
                    out = model(x).sum()
                    with micro_step(model, last):
                        out.backward()
        counts.append(len(calls))
    torch.save(counts, Path(folder) / f"calls{info.rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.timeout(150)
def test_accumulation_all_reduces_once_per_step(tmp_path):
    spawn(_count_allreduces, 2, str(tmp_path / "store"), (str(tmp_path),), 120)
    calls = [torch.load(tmp_path / f"calls{r}.pt") for r in range(2)]
    # right: one all-reduce per optimizer step (2); forward outside no_sync: every
    # micro-step all-reduces (8), the bug of a flag set around backward() alone
    assert calls == [[2, 8], [2, 8]]


@pytest.mark.timeout(150)
def test_torchrun_runs_the_script_on_two_processes(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    command = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "transformer.train",
        "--d-model",
        "32",
        "--n-heads",
        "2",
        "--d-ff",
        "64",
        "--block-size",
        "16",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--log-every",
        "1",
        "--eval-blocks",
        "2",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "run"),
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("2 process(es)")
    assert sum(line.startswith("step ") for line in lines) == 2  # rank 0 alone prints
    model, extra = load_checkpoint(tmp_path / "run" / "model.pt", with_extra=True)
    assert extra["step"] == 2 and model.config.d_model == 32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="NCCL needs CUDA GPUs")
@pytest.mark.timeout(150)
def test_nccl_ddp_matches_one_process(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("NCCL data parallelism needs two GPUs")
    gpu = replace(TINY, device="cuda")
    single = run(replace(gpu, batch_size=16, accum=1))
    (ddp,) = run_spawned(gpu, 2, tmp_path, timeout_s=120)
    for result in ddp:
        assert _max_diff(result["params"], single["params"]) < 1e-5


def _fsdp_step(init_method: str, folder: str) -> None:
    from torch.distributed.fsdp import fully_shard

    info = init_distributed("cuda", init_method)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)).cuda()
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.ones(4, 8, device="cuda")).sum().backward()
    opt.step()
    torch.save(optimizer_state_bytes(opt), Path(folder) / f"fsdp{info.rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="FSDP is GPU-only here: it crashes on gloo/CPU",
)
@pytest.mark.timeout(150)
def test_fsdp_shards_the_optimizer_state(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("FSDP sharding needs two GPUs")
    spawn(_fsdp_step, 2, str(tmp_path / "store"), (str(tmp_path),), 120)
    sizes = [torch.load(tmp_path / f"fsdp{r}.pt") for r in range(2)]
    assert 0 < max(sizes) < sum(sizes)  # each rank holds a part of the state only
