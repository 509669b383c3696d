"""benchmarks/mnist_train.py: the IDX loader, the offline error, the three networks'
implementations agreeing with each other, and a smoke run of the script on synthetic data.

Nothing here times anything or reads a real data set; the IDX files are written by the tests."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
SCRIPT = os.path.join(BENCH, "mnist_train.py")
sys.path.insert(0, BENCH)

import data  # noqa: E402


def _write_split(folder, n_train=24, n_test=10, gz=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": torch.randint(0, 256, (n_train, 28, 28), generator=g, dtype=torch.uint8),
        "train-labels-idx1-ubyte": torch.randint(0, 10, (n_train,), generator=g, dtype=torch.uint8),
        "t10k-images-idx3-ubyte": torch.randint(0, 256, (n_test, 28, 28), generator=g, dtype=torch.uint8),
        "t10k-labels-idx1-ubyte": torch.randint(0, 10, (n_test,), generator=g, dtype=torch.uint8),
    }
    for i, (stem, t) in enumerate(arrays.items()):
        # mix compressed and raw files: both must be read
        suffix = ".gz" if (gz and i % 2 == 0) else ""
        data.write_idx(os.path.join(folder, stem + suffix), t)
    return arrays


def _env():
    env = dict(os.environ, SNN_CUDA_NO_DOWNLOAD="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def test_idx_loader_torchvision_layout(tmp_path):
    arrays = _write_split(str(tmp_path / "FashionMNIST" / "raw"))
    ds = data.load_dataset("fashion-mnist", str(tmp_path), allow_download=False)
    assert ds.name == "fashion-mnist"
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape == (24, 28, 28)
    assert ds.train.labels.dtype == torch.int64 and ds.test.images.shape == (10, 28, 28)
    assert torch.equal(ds.train.images, arrays["train-images-idx3-ubyte"])
    assert torch.equal(ds.test.labels, arrays["t10k-labels-idx1-ubyte"].long())
    batches = list(data.batches(ds.train, 10, shuffle=True, generator=torch.Generator().manual_seed(0), drop_last=True))
    assert len(batches) == 2 and data.num_batches(ds.train, 10, drop_last=True) == 2
    x, y = batches[0]
    assert x.shape == (10, 1, 28, 28) and x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert y.shape == (10,)
    # the whole test split, last batch short, in order
    xs = [x for x, _ in data.batches(ds.test, 4, shuffle=False)]
    assert [len(x) for x in xs] == [4, 4, 2]
    assert torch.equal(torch.cat(xs)[:, 0], ds.test.images.float() / 255)


def test_idx_loader_flat_folder_raw_files(tmp_path):
    arrays = _write_split(str(tmp_path), gz=False)
    ds = data.load_dataset("mnist", str(tmp_path), allow_download=False)
    assert torch.equal(ds.train.images, arrays["train-images-idx3-ubyte"])


def test_read_idx_rejects_garbage(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="IDX"):
        data.read_idx(str(p))
    p.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")  # 5 declared, 3 present
    with pytest.raises(ValueError, match="expected 5"):
        data.read_idx(str(p))


def test_offline_explicit_mnist_is_a_clear_error(tmp_path, monkeypatch):
    def offline(name, data_dir, timeout=None):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "download", offline)
    with pytest.raises(data.DatasetUnavailable) as e:
        data.load_dataset("mnist", str(tmp_path))
    msg = str(e.value)
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert stem in msg
    assert os.path.join(str(tmp_path), "MNIST", "raw") in msg
    assert "--dataset synthetic" in msg and "--dataset fashion-mnist" in msg
    assert "network unreachable" in msg


def test_auto_falls_back_to_synthetic(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "download", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    logged = []
    ds = data.load_dataset("auto", str(tmp_path), log=logged.append)
    assert ds.name == "synthetic" and ds.train.images.shape == (60000, 28, 28) and ds.test.labels.shape == (10000,)
    assert any("ACCURACY IS" in s for s in logged)


def test_script_offline_mnist_exits_with_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "train-images-idx3-ubyte" in proc.stderr and "--dataset synthetic" in proc.stderr
    assert not (tmp_path / "out" / "results.json").exists()


# ---------------------------------------------------------------------------------------------
# The implementations compute the same network
# ---------------------------------------------------------------------------------------------
snn_cuda = pytest.importorskip("snn_cuda")
import nets  # noqa: E402

needs_fused = pytest.mark.skipif(bool(nets.fused_available("cpu")), reason="snn_cuda CPU kernels not built")


def _impls(net):
    out = ["reference"]
    if not nets.fused_available("cpu"):
        out.append("fused")
    if (net, "peer") in nets.MODELS and not nets.peer_available(net):
        out.append("peer")
    return out


def _binary_images(B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, 1, 28, 28, generator=g) < 0.3).float()  # Poisson of {0, 1} is deterministic


@pytest.mark.parametrize("net", ["lif_fc", "tutorial5", "dense_if"])
def test_implementations_agree(net):
    T, B = 6, 8
    weights = nets.init_weights(net, 0)
    x = _binary_images(B) if net == "lif_fc" else torch.rand(B, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.arange(B) % 10
    results = {}
    for impl in _impls(net):
        model = nets.build(net, impl, T, weights)
        assert all(torch.equal(lin.weight, w["weight"]) for lin, w in zip(model.linears(), weights))
        for _ in range(2):  # twice: state must be reset between batches
            out = model(x)
            loss = nets.loss_fn(net, impl)(out, y)
        model.zero_grad()
        loss.backward()
        results[impl] = (out, loss.detach(), [lin.weight.grad.clone() for lin in model.linears()])
    ref_out, ref_loss, ref_grads = results["reference"]
    for impl, (out, loss, grads) in results.items():
        torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-5, msg=f"{net}/{impl} loss")
        o, r = (out[1], ref_out[1]) if net == "tutorial5" else (out, ref_out)
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4, msg=f"{net}/{impl} output")
        for g, rg in zip(grads, ref_grads):
            torch.testing.assert_close(g, rg, rtol=1e-3, atol=1e-5, msg=f"{net}/{impl} weight grad")


# ---------------------------------------------------------------------------------------------
# Smoke run of the script
# ---------------------------------------------------------------------------------------------
RUN_KEYS = {
    "net",
    "impl",
    "device",
    "dtype",
    "T",
    "batch_size",
    "samples_per_s",
    "epoch_s",
    "saved_mb",
    "peak_mem_mb",
    "test_acc",
    "epochs",
    "dataset",
}


def test_script_smoke_synthetic(tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        SCRIPT,
        "--net",
        "all",
        "--impl",
        "all",
        "--dataset",
        "synthetic",
        "--device",
        "cpu",
        "--limit-batches",
        "2",
        "--limit-test-batches",
        "1",
        "--batch-size",
        "8",
        "-T",
        "4",
        "--warmup",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "SYNTHETIC" in proc.stderr  # the loud notice
    res = json.loads((out / "results.json").read_text())
    assert {"machine", "runs"} <= set(res)
    got = {(r["net"], r["impl"]) for r in res["runs"]}
    for net in ("lif_fc", "tutorial5", "dense_if"):
        for impl in _impls(net):
            assert (net, impl) in got, (net, impl, res.get("skipped"))
    skipped = {(s["net"], s["impl"]) for s in res["skipped"]}
    assert ("dense_if", "peer") in skipped
    assert not any(s["reason"].startswith("failed") for s in res["skipped"])
    for r in res["runs"]:
        assert RUN_KEYS <= set(r), RUN_KEYS - set(r)
        assert r["dataset"] == "synthetic" and r["T"] == 4 and r["batch_size"] == 8 and r["epochs"] == 1
        assert r["samples_per_s"] > 0 and r["epoch_s"] > 0 and r["saved_mb"] > 0
        assert r["peak_mem_mb"] is not None and 0.0 <= r["test_acc"] <= 100.0
        assert r["in_own_process"] and r["train_batches_per_epoch"] == 2
        if r["impl"] == "reference":
            assert r["speedup_vs_reference"] == 1.0
    assert (out / "results.md").exists()
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "throughput.png").exists() and (out / "accuracy.png").exists()
