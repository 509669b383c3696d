"""Leaky on its declaration (csrc/kernels/models/leaky.h, the model ops, what snn_cuda.Leaky runs)
against the hand-written one-state Leaky kernels (neuron.h, the neuron ops, what it ran before),
both in this build and this process: forward + backward of one layer, the two paths interleaved
rep by rep, medians. Every configuration first checks that the two give the same spikes,
membranes and input gradients bit for bit.

    python benchmarks/leaky_decl.py --json out.json --md out.md
    python benchmarks/leaky_decl.py --shape 64 64 4096 --reps 9 --threads 1 2

Configurations: reset (subtract, zero, none) x membrane returned or not x dtype x threads. With the
membrane returned the new CPU backward reads it (state_seq), the old one its saved copy; without
it both replay 8-step chunks from checkpoints.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402

import snn_cuda  # noqa: E402
from snn_cuda import model_ops, ops  # noqa: E402
from snn_cuda import surrogate as sg  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
RESETS = ("subtract", "zero", "none")


def _old(x, reset, mem, beta, thr, sur):
    learn = isinstance(beta, torch.Tensor)
    spikes, saved, _, last = ops.neuron_multistep(
        x,
        None,
        model=ops.MODEL_LEAKY,
        reset=ops.LEAKY_RESETS[reset],
        surrogate_id=sur.kind_id,
        surrogate_param=sur.param,
        v_threshold=1.0 if learn else thr,
        beta=1.0 if learn else beta,
        decay_param=beta if learn else None,
        threshold_param=thr if learn else None,
        store_v_seq=mem,
        save_mode=None if mem else ops.SAVE_CKPT,
    )
    return spikes, (saved if mem else None), last


def _new(x, reset, mem, beta, thr, sur):
    decl = model_ops.MODELS["leaky"]
    params = model_ops.pack_params([beta, thr], tuple(x.shape[1:]), ops.state_dtype(x.dtype), x.device)
    spikes, seq, last = model_ops.model_multistep(
        "leaky",
        x,
        params,
        None,
        variant=decl.variants.index(reset),
        surrogate_id=sur.kind_id,
        surrogate_param=sur.param,
        return_states=mem,
    )
    return spikes, (model_ops.state_views(seq)[0] if mem else None), last[0]


def _step(fn, x, gs, gm, reset, mem, beta, thr, sur):
    xx = x.detach().requires_grad_(True)
    learn = isinstance(beta, torch.Tensor)
    if learn:  # fresh leaves: learnable scalar beta and threshold
        beta, thr = beta.detach().requires_grad_(True), thr.detach().requires_grad_(True)
    spikes, m, _ = fn(xx, reset, mem, beta, thr, sur)
    outs, grads = [spikes], [gs]
    if m is not None:
        outs.append(m)
        grads.append(gm)
    g = torch.autograd.grad(outs, [xx, beta, thr] if learn else [xx], grads)
    return (spikes, m) + tuple(g)


def run(shape, reps, threads_list, dtypes, learn=False):
    sur = sg.ATan()
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        for dname in dtypes:
            dt = DTYPES[dname]
            g = torch.Generator().manual_seed(0)
            x = (torch.randn(shape, generator=g) * 0.8 + 0.4).to(dt)
            gs = torch.randn(shape, generator=g).to(dt)
            gm = torch.randn(shape, generator=g).to(ops.state_dtype(dt))
            sdt = ops.state_dtype(dt)
            beta, thr = (torch.tensor(0.5, dtype=sdt), torch.tensor(1.0, dtype=sdt)) if learn else (0.5, 1.0)
            for reset in RESETS:
                for mem in (True, False):
                    args = (reset, mem, beta, thr, sur)
                    a = _step(_old, x, gs, gm, *args)
                    b = _step(_new, x, gs, gm, *args)
                    # spikes, membranes, grad_x bitwise; the parameter gradients are sums over
                    # neurons reduced by torch in different shapes ([N] vs [2, N, 1]): to rounding
                    same = all((u is None and v is None) or torch.equal(u, v) for u, v in zip(a[:3], b[:3]))
                    close = all(torch.allclose(u, v, rtol=1e-4, atol=0) for u, v in zip(a[3:], b[3:]))
                    if not (same and close):
                        raise SystemExit(f"results differ: {dname} {reset} mem={mem} threads={threads}")
                    t_old, t_new = [], []
                    for r in range(reps):
                        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                            fn = _old if name == "old" else _new
                            t0 = time.perf_counter()
                            _step(fn, x, gs, gm, *args)
                            (t_old if name == "old" else t_new).append(time.perf_counter() - t0)
                    mo, mn = statistics.median(t_old) * 1e3, statistics.median(t_new) * 1e3
                    rows.append(
                        dict(
                            threads=threads,
                            dtype=dname,
                            learn=learn,
                            reset=reset,
                            mem=mem,
                            old_ms=round(mo, 3),
                            new_ms=round(mn, 3),
                            ratio=round(mn / mo, 3),
                            bitwise=True,
                        )
                    )
                    print(
                        f"threads={threads} {dname:8s} {reset:8s} mem={int(mem)}  hand-written {mo:8.2f} ms  "
                        f"declared {mn:8.2f} ms  declared/hand-written {mn / mo:.3f}",
                        flush=True,
                    )
    return rows


def to_md(res) -> str:
    hw = res["hardware"]
    lines = [
        f"Leaky, declared (model ops) vs hand-written (neuron ops), forward + backward of one layer, shape "
        f"{res['shape']}, {res['reps']} interleaved reps, medians. {machine.line(hw)}. "
        "Every row bit-identical (spikes, membranes, input gradients)"
        + ("; learnable scalar beta and threshold, their gradients equal to rounding." if res.get("learn") else "."),
        "",
        "| threads | dtype | reset | membrane returned | hand-written ms | declared ms | declared / hand-written |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['threads']} | {r['dtype']} | {r['reset']} | {'yes' if r['mem'] else 'no'} | {r['old_ms']:.2f} | "
            f"{r['new_ms']:.2f} | {r['ratio']:.3f} |"
        )
    ratios = sorted(r["ratio"] for r in res["rows"])
    lines += ["", f"Median ratio {statistics.median(ratios):.3f}; range {ratios[0]:.3f}-{ratios[-1]:.3f}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs="+", default=[64, 64, 4096])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--learn", action="store_true", help="learnable scalar beta and threshold (their gradients)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None)
    args = ap.parse_args(argv)
    if not snn_cuda.build_info()["cpu"]:
        raise SystemExit("the CPU kernels are not built")
    rows = run(tuple(args.shape), args.reps, args.threads, args.dtypes, args.learn)
    res = dict(shape=args.shape, reps=args.reps, learn=args.learn, hardware=machine.describe(), rows=rows)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    if args.md:
        Path(args.md).write_text(to_md(res))
    print(to_md(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
