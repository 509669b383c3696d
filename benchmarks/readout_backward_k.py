#!/usr/bin/env python
"""NeuronLinear's CPU readout backward against the unfused alternative, by number of outputs K.

tutorial5's hidden Leaky ([T=25, B=128, F=1000], byte spikes, checkpoints): neuron_backward with
readout_grad / readout_weight (the kernel forms grad_spikes = gy W per row) against
grad_spikes = gy @ W (MKL) followed by the plain backward. Chooses ops.READOUT_MAX_OUTPUTS.

    python benchmarks/readout_backward_k.py
"""

import statistics
import time

import torch

import snn_cuda  # noqa: F401  (registers the torch.ops.snn_cuda ops)
from snn_cuda import ops

FWD, BWD = torch.ops.snn_cuda.neuron_forward.default, torch.ops.snn_cuda.neuron_backward.default
T, B, F = 25, 128, 1000
x = torch.rand(B, F) * 0.3
names = [a.name for a in FWD._schema.arguments]


def args(**kw):
    d = dict(
        x=x,
        v0=None,
        decay_param=None,
        threshold_param=None,
        T=T,
        model=ops.MODEL_LEAKY,
        reset=ops.RESET_SOFT,
        surrogate=1,
        surrogate_param=2.0,
        tau=2.0,
        v_threshold=1.0,
        v_reset=0.0,
        v_floor=0.0,
        beta=0.95,
        v_init=0.0,
        decay_input=True,
        has_floor=False,
        detach_reset=False,
        save_mode=ops.SAVE_CKPT,
        store_v_seq=False,
        spikes_uint8=True,
    )
    d.update(kw)
    return [d[n] for n in names]


_, saved, _, _ = FWD(*args())


def med(f, n=30):
    for _ in range(3):
        f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


bn = [a.name for a in BWD._schema.arguments]


def bargs(**kw):
    d = dict(
        grad_spikes=None,
        grad_v_seq=None,
        grad_v_last=None,
        saved=saved,
        x=x,
        v0=None,
        decay_param=None,
        threshold_param=None,
        T=T,
        save_mode=ops.SAVE_CKPT,
        model=ops.MODEL_LEAKY,
        reset=ops.RESET_SOFT,
        surrogate=1,
        surrogate_param=2.0,
        tau=2.0,
        v_threshold=1.0,
        v_reset=0.0,
        v_floor=0.0,
        beta=0.95,
        v_init=0.0,
        decay_input=True,
        has_floor=False,
        detach_reset=False,
        grad_decay=False,
        grad_threshold=False,
        x_dtype=torch.float32,
        readout_grad=None,
        readout_weight=None,
    )
    d.update(kw)
    return [d[n] for n in bn]


for K in (4, 10, 16, 24, 32, 48, 64):
    gy = torch.randn(T, B, K)
    w = torch.randn(K, F)
    a = med(lambda: BWD(*bargs(readout_grad=gy, readout_weight=w)))
    b = med(lambda: BWD(*bargs(grad_spikes=gy.matmul(w))))
    print(f"K={K:3d} readout {a:.3f} ms   matmul+backward {b:.3f} ms")
