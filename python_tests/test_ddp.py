"""DistributedDataParallel: the fused layers train under DDP exactly as in one process.

* The neuron state (`.v`, `.mem`, `.c`) is a plain attribute: not a parameter, not a buffer, so it
  is not in `state_dict`, DDP's `broadcast_buffers` never touches it, and `reset_net` resets each
  replica's own state.
* Two CPU processes (gloo) train a small fused SNN in float64 for 2 SGD steps on fixed inputs, each
  on its half of the batch; the parameters equal a single-process run on the whole batch (fp
  tolerance) and are bitwise equal on both ranks.
* A smoke run of `benchmarks/mnist_train.py --ddp` under torchrun with 2 processes, synthetic data.

The workers are this file run as a script (`python test_ddp.py --worker OUT`) with torchrun's
environment variables set by hand, so nothing depends on pickling test functions.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import snn_cuda  # noqa: E402
from snn_cuda.functional import reset_net  # noqa: E402

T, BATCH, N_IN, N_HID, N_OUT, STEPS, LR = 6, 8, 12, 16, 4, 2, 0.5
WORLD = 2


def _fused_available() -> str:
    try:
        return snn_cuda._ext.unavailable_reason("cpu") or ""
    except Exception as e:  # pragma: no cover
        return str(e)


needs_fused = pytest.mark.skipif(bool(_fused_available()), reason=f"no fused CPU kernels: {_fused_available()}")


class SmallSNN(nn.Module):
    """Linear -> LIF (fused) -> Linear -> Leaky (fused), multi-step [T, B, ...]."""

    def __init__(self):
        super().__init__()
        self.fc1 = snn_cuda.SeqToANN(nn.Linear(N_IN, N_HID))
        self.lif = snn_cuda.LIF(tau=2.0, surrogate=snn_cuda.surrogate.ATan(), backend="fused")
        self.fc2 = snn_cuda.SeqToANN(nn.Linear(N_HID, N_OUT))
        self.leaky = snn_cuda.Leaky(beta=0.9, backend="fused")

    def forward(self, x):
        reset_net(self)
        spk, mem = self.leaky(self.fc2(self.lif(self.fc1(x))))
        return spk, mem


def make_model() -> SmallSNN:
    torch.manual_seed(1234)
    model = SmallSNN().double()
    with torch.no_grad():  # large enough weights that both layers spike
        for lin in (model.fc1[0], model.fc2[0]):
            lin.weight.mul_(3.0)
    return model


def fixed_data():
    """The global batch: [T, BATCH, N_IN] inputs and [BATCH] targets, no randomness in the step."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(T, BATCH, N_IN, generator=g, dtype=torch.float64) * 2.0
    y = torch.randint(0, N_OUT, (BATCH,), generator=g)
    return x, y


def loss_fn(spk, mem, y):
    # a mean over the local batch: DDP averages gradients across ranks, so with equal shards the
    # update equals the single-process one on the whole batch with the same mean loss
    rate = spk.mean(0)
    onehot = torch.nn.functional.one_hot(y, N_OUT).to(rate.dtype)
    return torch.nn.functional.mse_loss(rate, onehot) + torch.nn.functional.cross_entropy(mem.mean(0), y)


def train(model, x, y, steps=STEPS):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    losses = []
    for _ in range(steps):
        spk, mem = model(x)
        loss = loss_fn(spk, mem, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    env = dict(
        os.environ,
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
        SNN_CUDA_NO_DOWNLOAD="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


# ---------------------------------------------------------------------------------------------
# The worker (this file as a script, one process per rank)
# ---------------------------------------------------------------------------------------------
def worker(out_path: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y = fixed_data()
    shard = BATCH // world
    xs, ys = x[:, rank * shard : (rank + 1) * shard], y[rank * shard : (rank + 1) * shard]
    model = make_model()
    ddp = DDP(model)  # broadcast_buffers=True (the default): there are no buffers to broadcast
    losses = train(ddp, xs, ys)
    # the replica's own state: the membrane of its own shard, reset_net clears it per replica
    v_shape = list(model.lif.v.shape)
    reset_net(ddp)
    reset_ok = model.lif.v == model.lif.v_init and model.leaky.mem == 0.0
    torch.save(
        {
            "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "losses": losses,
            "v_shape": v_shape,
            "reset_ok": bool(reset_ok),
            "buffers": [n for n, _ in model.named_buffers()],
        },
        out_path,
    )
    dist.barrier()
    dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
def test_state_is_not_in_state_dict_nor_a_buffer():
    model = nn.Sequential(
        snn_cuda.SeqToANN(nn.Linear(5, 6)),
        snn_cuda.LIF(tau=2.0, backend="torch"),
        snn_cuda.IF(backend="torch"),
        snn_cuda.SeqToANN(nn.Linear(6, 3)),
        snn_cuda.Leaky(beta=0.9, backend="torch"),
    )
    before = set(model.state_dict().keys())
    model(torch.rand(4, 2, 5) * 3)  # the state now holds tensors
    assert isinstance(model[1].v, torch.Tensor) and isinstance(model[4].mem, torch.Tensor)
    keys = set(model.state_dict().keys())
    assert keys == before == {"0.0.weight", "0.0.bias", "3.0.weight", "3.0.bias"}
    assert list(model.buffers()) == []
    assert {id(p) for p in model.parameters()} == {
        id(model[0][0].weight),
        id(model[0][0].bias),
        id(model[3][0].weight),
        id(model[3][0].bias),
    }
    # a state_dict round trip carries no state; reset_net clears it
    fresh = nn.Sequential(
        snn_cuda.SeqToANN(nn.Linear(5, 6)),
        snn_cuda.LIF(backend="torch"),
        snn_cuda.IF(backend="torch"),
        snn_cuda.SeqToANN(nn.Linear(6, 3)),
        snn_cuda.Leaky(beta=0.9, backend="torch"),
    )
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert fresh[1].v == 0.0 and fresh[4].mem == 0.0
    reset_net(model)
    assert model[1].v == 0.0 and model[2].v == 0.0 and model[4].mem == 0.0


@needs_fused
def test_ddp_two_processes_match_single_process(tmp_path):
    port = _free_port()
    procs, outs = [], []
    for rank in range(WORLD):
        out = str(tmp_path / f"rank{rank}.pt")
        outs.append(out)
        env = _env(
            RANK=rank,
            LOCAL_RANK=rank,
            WORLD_SIZE=WORLD,
            LOCAL_WORLD_SIZE=WORLD,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker", out],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, p in enumerate(procs):
        assert p.returncode == 0, f"rank {rank} failed:\n{logs[rank]}"
    r0, r1 = (torch.load(o) for o in outs)

    # single process, the whole batch, the same initial weights and the same mean loss
    x, y = fixed_data()
    ref = make_model()
    ref_losses = train(ref, x, y)
    ref_params = ref.state_dict()

    assert set(r0["params"]) == set(ref_params) == {"fc1.0.weight", "fc1.0.bias", "fc2.0.weight", "fc2.0.bias"}
    for k, v in ref_params.items():
        assert r0["params"][k].dtype == torch.float64
        # both replicas bitwise identical (DDP averaged the same gradients into both)
        assert torch.equal(r0["params"][k], r1["params"][k]), k
        # and equal to the single-process run on the concatenated batch
        torch.testing.assert_close(r0["params"][k], v, rtol=1e-10, atol=1e-12, msg=k)
        assert not torch.equal(v, make_model().state_dict()[k]), f"{k} did not change: the test is vacuous"
    # the mean of the two local losses is the global loss of the first step (same weights then)
    assert abs((r0["losses"][0] + r1["losses"][0]) / 2 - ref_losses[0]) < 1e-10
    # each replica kept its own shard's state and reset it itself; nothing was a buffer
    for r in (r0, r1):
        assert r["v_shape"] == [BATCH // WORLD, N_HID]
        assert r["reset_ok"] and r["buffers"] == []


@needs_fused
def test_benchmark_ddp_smoke(tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "--master_addr=127.0.0.1",
        os.path.join(ROOT, "benchmarks", "mnist_train.py"),
        "--ddp",
        "--dataset",
        "synthetic",
        "--net",
        "lif_fc",
        "--impl",
        "fused",
        "-T",
        "8",
        "--batch-size",
        "32",
        "--limit-batches",
        "3",
        "--limit-test-batches",
        "1",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--no-profile",
        "--no-plots",
        "--no-progress",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    res = json.loads((out / "results.json").read_text())
    assert [(r["net"], r["impl"]) for r in res["runs"]] == [("lif_fc", "fused")]
    r = res["runs"][0]
    assert r["world_size"] == 2 and res["machine"]["world_size"] == 2
    assert len(r["per_rank_samples_per_s"]) == 2 and all(s > 0 for s in r["per_rank_samples_per_s"])
    assert r["samples_per_s"] > 0 and r["batch_size"] == 32 and r["global_batch_size"] == 64
    assert r["backend"] == "gloo" and r["peak_mem_mb"] is None
    assert "world" in (out / "results.md").read_text().lower()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        sys.exit(pytest.main([__file__, "-q"]))
