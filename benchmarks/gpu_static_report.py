#!/usr/bin/env python3
"""Static GPU report of the compiled snn_cuda kernels (no GPU needed).

From the built extension (or any .so / .cubin holding them) and for one SASS
architecture (default sm_90), per kernel: registers, spill (STL/LDL in SASS,
STACK/LOCAL from ``cuobjdump -res-usage``), theoretical occupancy for the
launcher's block size, the global loads/stores of the time loop with their
widths, the loads in flight per thread, and the bytes moved per neuron-step.
Optionally (``--spikingjelly``) the same for SpikingJelly 2.0.0's native CUDA
LIF kernels, downloaded from PyPI and compiled into a temporary directory.

Tools: cuobjdump / nvdisasm from the triton package (or CUDA_HOME/bin), nvcc
from CUDA_HOME for the SpikingJelly build, c++filt for names.

    python benchmarks/gpu_static_report.py [SO_OR_CUBIN] [--arch sm_90]
        [--out benchmarks/results/gpu_static_report.md] [--spikingjelly]

Writes the Markdown report and a .json beside it, and prints the Markdown.

Bytes per neuron-step are derived analytically from each kernel's dtype and
save mode (what the kernel must read/write per step, per-chunk items divided
by kChunk) and cross-checked against the SASS of the time loop: for every
innermost loop of the kernel, the global loads/stores are counted by width,
split into unconditional ones and conditional ones (predicated, or inside a
forward-branch region of the loop body); the loop's steps per iteration k is
the number of per-step marker operations (forward: x loads; backward: grad_x
stores of the storage width); a mode is "SASS-consistent" when some loop has,
for every (load/store, width), unconditional <= expected(k) <= total.

The declared-model kernels (model_fwd_kernel / model_bwd_kernel, every model x
variant of snn_cuda/_model_list.py) get a section of their own: their modes'
bytes per neuron-step from each model's declaration (states, save /
return_states, grad_state_seq), the instructions a kChunk-step iteration
issues in each mode (the backward's replay spans re-read x and the
checkpoint) checked against the SASS loop the same way, and where their
spills sit (inside the time loop or not, per step or per replay span).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# H100 (sm_90) per-SM limits, from the CUDA occupancy calculator / tuning guide.
SM_LIMITS = {
    "sm_90": dict(regs=65536, threads=2048, warps=64, blocks=32, reg_unit=256, max_regs=255),
    "sm_80": dict(regs=65536, threads=2048, warps=64, blocks=32, reg_unit=256, max_regs=255),
    "sm_86": dict(regs=65536, threads=1536, warps=48, blocks=16, reg_unit=256, max_regs=255),
    "sm_89": dict(regs=65536, threads=1536, warps=48, blocks=24, reg_unit=256, max_regs=255),
    "sm_75": dict(regs=65536, threads=1024, warps=32, blocks=16, reg_unit=256, max_regs=255),
}
TYPE_SIZES = {"float": 4, "double": 8, "__half": 2, "__nv_bfloat16": 2, "c10::Half": 2, "c10::BFloat16": 2}
DTYPE_NAMES = {"float": "fp32", "double": "fp64", "__half": "fp16", "__nv_bfloat16": "bf16"}
DTYPE_ORDER = ["fp32", "fp16", "bf16", "fp64"]


# ----------------------------------------------------------------------------- NeuronLinear traffic
class _SpikeTraffic:
    """A dispatch mode counting the bytes that go through the spike tensor between a neuron layer
    and its Linear layer: the neuron op's spike output (written), and every op that reads a tensor
    derived from it (views are free; a non-view op reads its spike-derived inputs and writes its
    spike-sized outputs, which stay spike-derived). Other tensors (x, weights, grad_spikes, the
    neuron's saved state) are the same with or without the fusion and are not counted."""

    def __new__(cls, numel):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        class Mode(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.marked, self.keep = set(), []
                self.fwd = {"read": 0, "write": 0, "launches": 0, "ops": []}
                self.bwd = {"read": 0, "write": 0, "launches": 0, "ops": []}
                self.phase = self.fwd

            def _mark(self, t):
                self.marked.add(id(t))
                self.keep.append(t)  # ids stay unique while the trace lives

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, torch.Tensor)]
                name = str(func.overloadpacket)
                if name.startswith(("snn_cuda.neuron_forward", "snn_cuda.model_forward")):
                    self._mark(outs[0])
                    self.phase["write"] += outs[0].nbytes
                    self.phase["launches"] += 1
                    self.phase["ops"].append(f"{name} (spikes {outs[0].dtype})")
                    return out
                flat = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
                flat += [x for a in args if isinstance(a, (list, tuple)) for x in a if isinstance(x, torch.Tensor)]
                hit = [a for a in flat if id(a) in self.marked]
                if not hit:
                    return out
                if func.is_view or name in ("aten.detach", "aten.alias", "aten.lift_fresh"):
                    for o in outs:
                        self._mark(o)
                    return out
                self.phase["read"] += sum(a.nbytes for a in hit)
                self.phase["launches"] += 1
                self.phase["ops"].append(name)
                for o in outs:
                    if o.numel() == numel:
                        self._mark(o)
                        self.phase["write"] += o.nbytes
                return out

        return Mode()


def neuron_linear_traffic(dtype_name="fp32", T=8, B=16, N=256, K=10):
    """Bytes per neuron-step through the spike tensor, forward and backward (one training step),
    traced op by op (_SpikeTraffic) on CPU tensors with the CUDA decision of
    snn_cuda.ops._wide_spikes forced (the ops it runs are the ones a CUDA tensor runs; the CPU's
    readout fusion only changes grad_spikes, which is not counted): neuron + nn.Linear,
    NeuronLinear as on CUDA, and NeuronLinear as on the CPU (uint8 spikes read by the byte
    kernels). Also checks, on fake CUDA tensors, that the CUDA forward asks the neuron for spikes
    in x's dtype. Returns rows of dicts (bytes per neuron-step)."""
    sys.path.insert(0, str(REPO))
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    import snn_cuda
    from snn_cuda import ops

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}[dtype_name]
    numel = T * B * N

    def run(make, force_wide):
        torch.manual_seed(0)
        saved = ops._wide_spikes
        if force_wide is not None:
            ops._wide_spikes = lambda x: force_wide
        try:
            neuron, linear, fused = make()
            x = torch.randn(T, B, N, dtype=dtype).mul(2).requires_grad_(True)
            mode = _SpikeTraffic(numel)
            with mode:
                snn_cuda.functional.reset_net(neuron)
                y = linear(neuron(x)) if not fused else fused(x)
                mode.phase = mode.bwd
                y.float().square().sum().backward()
            return mode
        finally:
            ops._wide_spikes = saved

    def leaky():
        return snn_cuda.Leaky(beta=0.9, return_mem=False, backend="fused")

    def pair():
        return leaky(), torch.nn.Linear(N, K, dtype=dtype), None

    def fused():
        nl = snn_cuda.NeuronLinear(leaky(), snn_cuda.SpikeLinear(N, K, dtype=dtype))
        return nl.neuron, nl.linear, nl

    rows = []
    for label, make, wide in (
        ("neuron + nn.Linear", pair, None),
        ("NeuronLinear, CUDA path (spikes in x's dtype into the GEMM)", fused, True),
        ("NeuronLinear, CPU path (uint8 spikes read by the byte kernels)", fused, False),
    ):
        if wide is False and dtype_name not in ("fp32", "fp64"):
            continue  # 16-bit spike_linear on the CPU widens inside the op, which a trace cannot see
        m = run(make, wide)
        rows.append(
            dict(
                impl=label,
                dtype=dtype_name,
                fwd_B=(m.fwd["read"] + m.fwd["write"]) / numel,
                bwd_B=(m.bwd["read"] + m.bwd["write"]) / numel,
                fwd_launches=m.fwd["launches"],
                bwd_launches=m.bwd["launches"],
                ops_fwd=m.fwd["ops"],
                ops_bwd=m.bwd["ops"],
                traced=True,
            )
        )
    # The decision itself, as a CUDA tensor meets it (fake tensors: no GPU needed).
    seen = []

    class Spy(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            # spikes_uint8: neuron_forward's argument 20, model_forward's 12
            pos = {"snn_cuda.neuron_forward": 20, "snn_cuda.model_forward": 12}.get(str(func.overloadpacket))
            if pos is not None:
                seen.append(bool(args[pos]) if len(args) > pos else bool((kwargs or {}).get("spikes_uint8", False)))
            return func(*args, **(kwargs or {}))

    with FakeTensorMode(allow_non_fake_inputs=False), torch.device("cuda"):
        nl = snn_cuda.NeuronLinear(leaky(), snn_cuda.SpikeLinear(N, K, dtype=dtype))
        xf = torch.randn(T, B, N, dtype=dtype, requires_grad=True)
        with Spy():
            nl(xf)
    cuda_uint8 = seen[-1] if seen else None
    # Before this build, on CUDA: uint8 spikes (1 B written), then spike_linear and its weight
    # gradient each widened them with spikes.ne(0).to(dtype) (1 B read + 1 B bool written, 1 B
    # read + t B written) before the GEMM read t B (csrc/cpu/spike_linear_cpu.cpp, CUDA path).
    tb = {"fp32": 4, "fp16": 2, "bf16": 2, "fp64": 8}[dtype_name]
    rows.append(
        dict(
            impl="NeuronLinear before (CUDA: uint8 spikes, ne(0).to() widening in spike_linear and its weight grad)",
            dtype=dtype_name,
            fwd_B=1 + (1 + 1) + (1 + tb) + tb,
            bwd_B=(1 + 1) + (1 + tb) + tb,
            fwd_launches=4,
            bwd_launches=3,
            traced=False,
        )
    )
    return rows, cuda_uint8


# ----------------------------------------------------------------------------- tools
def find_tool(name):
    cands = []
    try:
        import triton  # noqa: F401

        cands.append(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)
    except Exception:
        pass
    for p in glob.glob(
        str(REPO / ".venv" / "lib" / "python3*" / "site-packages" / "triton" / "backends" / "nvidia" / "bin" / name)
    ):
        cands.append(Path(p))
    home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    cands.append(Path(home) / "bin" / name)
    for c in cands:
        if c.exists():
            return str(c)
    return shutil.which(name)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def tool_version(path):
    if not path:
        return "not found"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"release [\d.]+, V[\d.]+", out)
        return m.group(0) if m else out.strip().splitlines()[-1]
    except Exception as e:  # pragma: no cover
        return f"? ({e})"


def demangle(names):
    cxxfilt = shutil.which("c++filt")
    if not cxxfilt or not names:
        return {n: n for n in names}
    out = subprocess.run([cxxfilt], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def default_so():
    hits = sorted(glob.glob(str(REPO / "snn_cuda" / "_C*.so")))
    if hits:
        return hits[0]
    try:
        import snn_cuda._C as C  # noqa: N812

        return C.__file__
    except Exception:
        return None


def read_header_int(path, name, default):
    try:
        m = re.search(r"\b%s\s*=\s*(\d+)" % re.escape(name), Path(path).read_text())
        return int(m.group(1)) if m else default
    except OSError:
        return default


def read_enum(path, prefix):
    """{value: NAME} of `PREFIX_NAME = value` enumerators in a header."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    return {int(v): k[len(prefix) :] for k, v in re.findall(r"\b(%s\w+)\s*=\s*(\d+)" % prefix, text)}


# ----------------------------------------------------------------------------- SASS parsing
INS_RE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)\s*(.*?)\s*;")
FUNC_RE = re.compile(r"^\s*Function\s*:\s*(\S+)")
RES_FUNC_RE = re.compile(r"^\s*Function\s+(\S+):")
RES_RE = re.compile(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)")


def parse_res_usage(text):
    res, cur = {}, None
    for line in text.splitlines():
        m = RES_FUNC_RE.match(line)
        if m:
            cur = m.group(1)
            continue
        m = RES_RE.search(line)
        if m and cur:
            res[cur] = dict(zip(("reg", "stack", "shared", "local"), map(int, m.groups())))
            cur = None
    return res


def parse_sass(text):
    """{mangled name: [(addr, pred, opcode, operands)]}"""
    funcs, cur = {}, None
    for line in text.splitlines():
        m = FUNC_RE.match(line)
        if m:
            cur = m.group(1)
            funcs[cur] = []
            continue
        if cur is None:
            continue
        m = INS_RE.search(line)
        if m:
            pred = (m.group(2) or "").strip()
            funcs[cur].append((int(m.group(1), 16), pred, m.group(3), m.group(4)))
    return funcs


def mem_kind(op):
    base = op.split(".")[0]
    if base in ("LDG", "LD"):
        return "load"
    if base in ("STG", "ST"):
        return "store"
    return None


def mem_width(op):
    toks = op.split(".")[1:]
    for t in toks:
        if t in ("U8", "S8"):
            return 8
        if t in ("U16", "S16"):
            return 16
        if t in ("64", "128", "256"):
            return int(t)
    return 32


def branch_target(operands):
    m = re.search(r"0x([0-9a-f]+)", operands)
    return int(m.group(1), 16) if m else None


def regs_of(operand_text):
    """Registers named in an operand list, expanded for .64/.128 pairs."""
    out = set()
    for m in re.finditer(r"\bR(\d+)(\.64|\.128)?", operand_text):
        r = int(m.group(1))
        n = {".64": 2, ".128": 4}.get(m.group(2) or "", 1)
        out.update(range(r, r + n))
    return out


def find_loops(ins):
    """Innermost loops as (head_addr, backedge_addr, [instructions])."""
    edges = []
    for a, pred, op, opnds in ins:
        if op.startswith("BRA"):
            t = branch_target(opnds)
            if t is not None and t <= a:
                edges.append((t, a))
    inner = [e for e in edges if not any(o != e and e[0] <= o[0] and o[1] <= e[1] for o in edges)]
    out = []
    for h, b in sorted(set(inner)):
        out.append((h, b, [i for i in ins if h <= i[0] <= b]))
    return out


def analyze_loop(body):
    """Memory ops of one loop body: (kind, width, conditional, opcode), and loads in flight."""
    tail = body[-1][0]
    regions = []  # forward branch regions inside the loop: code in them may be skipped
    for a, pred, op, opnds in body:
        if op.startswith("BRA") and a != tail:
            t = branch_target(opnds)
            if t is not None and t > a:
                regions.append((a, min(t, tail + 1)))
    ops = []
    for a, pred, op, opnds in body:
        k = mem_kind(op)
        if k:
            cond = (pred not in ("", "@PT")) or any(s < a < e for s, e in regions)
            ops.append(dict(kind=k, width=mem_width(op), cond=cond, op=op, addr=a))
    # Loads in flight: walk the body in order; a load stays outstanding until an
    # instruction reads (or overwrites) its destination register.
    outstanding, best = [], 0
    for a, pred, op, opnds in body:
        parts = [p.strip() for p in opnds.split(",")]
        k = mem_kind(op)
        if k == "load":
            srcs = regs_of(",".join(parts[1:]))
            dst = regs_of(parts[0]) if parts else set()
        elif k == "store" or op.startswith(("BRA", "EXIT", "CALL", "RET", "ISETP", "FSETP", "DSETP", "HSETP")):
            srcs, dst = regs_of(opnds), set()
        else:
            srcs = regs_of(",".join(parts[1:]))
            dst = regs_of(parts[0]) if parts else set()
        outstanding = [d for d in outstanding if not (d & srcs) and not (d & dst and k != "load")]
        if k == "load":
            outstanding.append(dst)
            best = max(best, len(outstanding))
    return ops, best


def counts(ops, only_uncond=False):
    c = Counter()
    for o in ops:
        if only_uncond and o["cond"]:
            continue
        c[(o["kind"], o["width"])] += 1
    return c


def fmt_ops(ops, kind):
    tot, cond = Counter(), Counter()
    for o in ops:
        if o["kind"] == kind:
            tot[o["width"]] += 1
            cond[o["width"]] += o["cond"]
    if not tot:
        return "none"
    parts = []
    for w in sorted(tot):
        s = f"{tot[w]}×{w}b"
        if cond[w]:
            s += f" ({cond[w]} cond)"
        parts.append(s)
    return ", ".join(parts)


# ----------------------------------------------------------------------------- occupancy
def occupancy(regs, block, arch, shared=0):
    L = SM_LIMITS.get(arch, SM_LIMITS["sm_90"])
    wpb = math.ceil(block / 32)
    regs = max(regs, 1)
    per_warp = math.ceil(regs * 32 / L["reg_unit"]) * L["reg_unit"]
    warps_by_regs = L["regs"] // per_warp
    blocks = min(warps_by_regs // wpb, L["threads"] // (wpb * 32), L["blocks"])
    if shared:
        blocks = min(blocks, (228 * 1024) // (shared + 1024))
    return 100.0 * blocks * wpb / L["warps"], blocks


# ----------------------------------------------------------------------------- kernel model
def pct(x):
    return f"{x:.1f} %" if abs(x - round(x)) > 1e-9 else f"{x:.0f} %"


def split_template_args(demangled):
    m = re.search(r"<(.*)>\s*\(", demangled)
    if not m:
        return []
    s, depth, cur, out = m.group(1), 0, "", []
    for ch in s:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def classify(demangled):
    """(kind, template args, storage type) for a demangled kernel name."""
    base = demangled.split("<")[0].replace("void ", "").strip()
    args = split_template_args(demangled)
    storage = next((a for a in args if a in TYPE_SIZES), None)
    if base.endswith("neuron_fwd_kernel") or base.endswith("lif_forward"):
        kind = "fwd"
    elif base.endswith("neuron_bwd_kernel") or base.endswith("lif_backward"):
        kind = "bwd"
    elif base.endswith("model_fwd_kernel"):
        kind = "model-fwd"
    elif base.endswith("model_bwd_kernel"):
        kind = "model-bwd"
    elif base.endswith("poisson_kernel"):
        kind = "poisson"
    elif base.endswith("narrow_kernel"):
        kind = "narrow"
    elif base.endswith("widen_kernel"):
        kind = "widen"
    else:
        kind = "other"
    return kind, base, args, storage


def steps_per_iter(kind, ops, t_bits):
    loads = [o for o in ops if o["kind"] == "load"]
    stores = [o for o in ops if o["kind"] == "store"]
    if kind in ("fwd", "model-fwd"):  # every load in a forward time loop is an x load (one per step)
        return len(loads) or None
    if kind in ("bwd", "model-bwd"):  # one grad_x store of the storage width per step (unless const_input)
        n = sum(1 for o in stores if o["width"] == t_bits)
        return n or None
    if kind == "poisson":
        return len(stores) or None
    return None


def expected_ops(mode_ops, k, K):
    """Counter{(kind,width): n} for k steps; per-chunk items need k % K == 0."""
    c = Counter()
    for kind, width, per in mode_ops:
        if per == "step":
            c[(kind, width)] += k
        else:
            if not K or k % K:
                return None
            c[(kind, width)] += k // K
    return c


def mode_bytes(mode_ops, K):
    b = 0.0
    for kind, width, per in mode_ops:
        b += width / 8 / (K if per == "chunk" else 1)
    return b


def snn_modes(kind, t, s, K):
    """Analytic per-neuron-step traffic of each save mode, LIF/IF models (bits)."""
    tb, sb = 8 * t, 8 * s
    if kind == "fwd":
        m = {
            "inference (no save)": [("load", tb, "step"), ("store", tb, "step")],
            "save-h": [("load", tb, "step"), ("store", tb, "step"), ("store", sb, "step")],
        }
        if K:
            m["checkpoint (recompute)"] = [("load", tb, "step"), ("store", tb, "step"), ("store", sb, "chunk")]
        return m
    if kind == "bwd":
        m = {"save-h": [("load", tb, "step"), ("load", sb, "step"), ("store", tb, "step")]}
        if K:
            m["recompute"] = [("load", tb, "step"), ("load", tb, "step"), ("load", sb, "chunk"), ("store", tb, "step")]
        return m
    return {}


def sj_modes(kind, t):
    tb = 8 * t
    if kind == "fwd":  # x, spikes, charged h (fp32); voltages only with store_v_seq
        return {"save-h (fp32 h)": [("load", tb, "step"), ("store", tb, "step"), ("store", 32, "step")]}
    if kind == "bwd":  # gs, charged h (fp32), gx; gv only with store_v_seq
        return {"save-h (fp32 h)": [("load", tb, "step"), ("load", 32, "step"), ("store", tb, "step")]}
    return {}


def analyze_module(sass_text, res_text, arch, block_of):
    """Analysis of every kernel in one cuobjdump -sass / -res-usage output."""
    funcs = parse_sass(sass_text)
    res = parse_res_usage(res_text)
    names = demangle(sorted(set(funcs) | set(res)))
    out = {}
    for mangled in sorted(set(funcs) | set(res)):
        dem = names.get(mangled, mangled)
        kind, base, args, storage = classify(dem)
        r = res.get(mangled, {})
        ins = funcs.get(mangled, [])
        spill = [i for i in ins if i[2].split(".")[0] in ("STL", "LDL")]
        spill_bytes = sum(mem_width(i[2]) // 8 for i in spill)
        block = block_of(kind, args)
        occ, blocks = occupancy(r.get("reg", 0), block, arch, r.get("shared", 0)) if r else (None, None)
        t = TYPE_SIZES.get(storage, 4)
        loops = []
        for h, b, body in find_loops(ins):
            ops, inflight = analyze_loop(body)
            if not ops:
                continue
            loops.append(dict(head=h, backedge=b, ops=ops, inflight=inflight, k=steps_per_iter(kind, ops, 8 * t)))
        # A spill in a time loop costs every iteration; one outside it, once per neuron.
        in_loop = [i for i in spill if any(lp["head"] <= i[0] <= lp["backedge"] for lp in loops)]
        ks = [lp["k"] for lp in loops if lp["k"]]
        kfall = Counter(ks).most_common(1)[0][0] if ks else None
        for lp in loops:
            if lp["k"] is None:
                lp["k"], lp["k_inferred"] = kfall, True
        out[mangled] = dict(
            name=dem,
            kind=kind,
            base=base,
            args=args,
            storage=storage,
            t=t,
            regs=r.get("reg"),
            stack=r.get("stack"),
            local=r.get("local"),
            shared=r.get("shared"),
            spill_ins=len(spill),
            spill_bytes=spill_bytes,
            spill_in_loop=len(in_loop),
            spill_in_loop_bytes=sum(mem_width(i[2]) // 8 for i in in_loop),
            block=block,
            occupancy=occ,
            blocks_per_sm=blocks,
            loops=loops,
            n_ins=len(ins),
            ins=ins,
        )
    return out


def match_mode(kinfo, mode_ops, K):
    """Best SASS loop consistent with a mode, or None."""
    best = None
    for lp in kinfo["loops"]:
        k = lp["k"]
        if not k:
            continue
        exp = expected_ops(mode_ops, k, K)
        if exp is None:
            continue
        tot, unc = counts(lp["ops"]), counts(lp["ops"], True)
        keys = set(exp) | set(tot)
        if all(unc[q] <= exp[q] <= tot[q] for q in keys):
            slack = sum(tot[q] - exp[q] for q in keys)
            if best is None or slack < best[0]:
                best = (slack, lp, exp)
    return best


# ----------------------------------------------------------------------------- declared models
MODEL_FWD_MODES = ("inference", "train", "states", "states + train")
MODEL_BWD_MODES = ("spike loss", "+ grad_state_seq")


class _ModelTitles(dict):
    """A declared model's layer name (Synaptic, CUBALIF, ...), read from the `__all__` of its file
    snn_cuda/models/<name>.py as text (no import: the report runs without a loadable extension)."""

    def __missing__(self, name):
        title = name
        try:
            text = (REPO / "snn_cuda" / "models" / f"{name}.py").read_text()
            m = re.search(r"__all__\s*=\s*\[([^\]]*)\]", text)
            layers = [w for w in re.findall(r"[\"']([A-Za-z_]\w*)[\"']", m.group(1)) if not w.endswith("_reference")]
            title = layers[0] if layers else name
        except (OSError, AttributeError):
            pass
        self[name] = title
        return title

    def get(self, name, default=None):
        return self[name]


MODEL_TITLES = _ModelTitles()


def model_decls():
    """{struct: (name, ModelDecl)} from snn_cuda/_model_list.py, generated from the model headers'
    declaration lines; loaded by path so that a missing or stale extension does not matter."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_snn_model_list", REPO / "snn_cuda" / "_model_list.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {d.struct: (name, d) for name, d in mod.MODELS.items()}


def bwd_span(n_states, s, K, block):
    """Steps per replay span of the model backward: BwdSpan in csrc/kernels/model_kernels.cuh (the
    whole chunk while its states take less than a quarter of the register cap that MinBlocks sets,
    else half)."""
    min_blocks = 2 if s == 8 else 4
    words = n_states * K * (s // 4)
    return K if words * 4 < 65536 // (block * min_blocks) else K // 2


def model_modes(kind, n_states, t, s, K, H):
    """Per mode of a declared-model kernel: the bytes per neuron-step it must move (``unique``:
    (load/store, bits, per step | per chunk, count)) and the global memory instructions one
    kChunk-step iteration of the time loop issues (``issued``: {(load/store, bits): (lo, hi)}).
    The two differ in the backward only: each replay span re-reads x from its chunk's start and
    reloads the checkpoint, and every backward step reads x_t again (an L1 hit, which the compiler
    may drop for the last step of a span, whose x is still in a register: lo)."""
    tb, sb = 8 * t, 8 * s
    if kind == "model-fwd":
        base = [("load", tb, "step", 1), ("store", tb, "step", 1)]
        ckpt = [("store", sb, "chunk", n_states)]
        seq = [("store", sb, "step", n_states)]
        uniq = dict(zip(MODEL_FWD_MODES, (base, base + ckpt, base + seq, base + seq + ckpt)))
        out = {}
        for m, items in uniq.items():
            iss = Counter()
            for kd, w, per, n in items:
                iss[(kd, w)] += n * (K if per == "step" else 1)
            out[m] = dict(unique=items, issued={q: (n, n) for q, n in iss.items()})
        return out
    spans = K // H
    replay = H * spans * (spans + 1) // 2  # span i replays steps 0 .. (i + 1) H - 1
    base = [("load", tb, "step", 1), ("load", tb, "step", 1), ("store", tb, "step", 1), ("load", sb, "chunk", n_states)]
    iss = {("load", tb): (replay + K - spans + K, replay + K + K), ("store", tb): (K, K)}
    iss[("load", sb)] = tuple(a + n_states * spans for a in iss.get(("load", sb), (0, 0)))
    out = {"spike loss": dict(unique=base, issued=dict(iss))}
    iss2 = dict(iss)
    iss2[("load", sb)] = tuple(a + n_states * K for a in iss[("load", sb)])
    out["+ grad_state_seq"] = dict(unique=base + [("load", sb, "step", n_states)], issued=iss2)
    return out


def unique_bytes(items, K):
    return sum(w / 8 * n / (K if per == "chunk" else 1) for _, w, per, n in items)


def match_model_mode(kinfo, mode, K):
    """The loop of a model kernel that can carry a mode: one kChunk-step iteration whose ops, for every
    (load/store, width), admit a count in the mode's range (unconditional ones at most the range's
    top, all of them at least its bottom); the closest such loop, with the counts the mode issues
    there. None if no loop fits."""
    best = None
    for lp in kinfo["loops"]:
        if lp["k"] != K:
            continue
        tot, unc = counts(lp["ops"]), counts(lp["ops"], True)
        keys = set(mode["issued"]) | set(tot)
        rng = {q: mode["issued"].get(q, (0, 0)) for q in keys}
        if all(max(unc[q], rng[q][0]) <= min(tot[q], rng[q][1]) for q in keys):
            used = {q: (max(unc[q], rng[q][0]), min(tot[q], rng[q][1])) for q in keys}
            slack = sum(tot[q] - used[q][1] for q in keys)
            if best is None or slack < best[0]:
                best = (slack, lp, used)
    return best


def spill_segments(ins, lp, marker):
    """(segments holding a spill op, segments): the loop body cut at its per-step marker ops
    (forward: x loads; backward: grad_x stores), so a spill executed every step shows in every
    segment, one per replay span in a few."""
    cuts = [o["addr"] for o in lp["ops"] if marker(o)]
    spills = [a for a, _, op, _ in ins if op.split(".")[0] in ("STL", "LDL") and lp["head"] <= a <= lp["backedge"]]
    bounds = [lp["head"], *cuts, lp["backedge"] + 1]
    segs = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    return sum(1 for lo, hi in segs if any(lo <= a < hi for a in spills)), len(segs)


def model_rows(ours, K, block):
    """One row per declared-model kernel (model x variant x dtype x fwd/bwd) with its modes."""
    decls = model_decls()
    rows = []
    for v in ours.values():
        if v["kind"] not in ("model-fwd", "model-bwd") or v["regs"] is None:
            continue
        struct = v["args"][0].split("::")[-1]
        name, d = decls.get(struct, (struct, None))
        ns = len(d.states) if d else None
        s = 8 if v["storage"] == "double" else 4
        try:
            variant = d.variants[int(v["args"][1])] if d else v["args"][1]
        except (ValueError, IndexError):
            variant = v["args"][1]
        H = bwd_span(ns, s, K, block) if ns and K else None
        modes = {}
        if ns and K:
            for m, mode in model_modes(v["kind"], ns, v["t"], s, K, H).items():
                hit = match_model_mode(v, mode, K)
                modes[m] = dict(
                    bytes=unique_bytes(mode["unique"], K),
                    sass_consistent=bool(hit),
                    issued=(
                        tuple(sum(w * n[i] for (_, w), n in hit[2].items()) / 8 / K for i in (0, 1)) if hit else None
                    ),
                    loop=hit[1]["head"] if hit else None,
                )
        big = MODEL_FWD_MODES[-1] if v["kind"] == "model-fwd" else MODEL_BWD_MODES[-1]
        lp = next((lp for lp in v["loops"] if modes.get(big, {}).get("loop") == lp["head"]), None)
        lp = lp or (v["loops"][0] if v["loops"] else None)
        tb = 8 * v["t"]
        if v["kind"] == "model-fwd":
            marker = lambda o: o["kind"] == "load"  # noqa: E731
        else:
            marker = lambda o: o["kind"] == "store" and o["width"] == tb  # noqa: E731
        segs = spill_segments(v["ins"], lp, marker) if lp and v["spill_in_loop"] else None
        # With 16-bit storage the state-width loads of the backward loop are the checkpoint reloads
        # (kStates per replay span) and grad_state_seq (kStates per step) alone: the span as compiled.
        span_sass = None
        if v["kind"] == "model-bwd" and lp and ns and K and 8 * s != tb:
            n = sum(1 for o in lp["ops"] if o["kind"] == "load" and o["width"] == 8 * s)
            spans = n / ns - K
            span_sass = K / spans if spans >= 1 and spans == int(spans) and K % int(spans) == 0 else 0
        rows.append(
            dict(
                model=name,
                struct=struct,
                variant=variant,
                dtype=DTYPE_NAMES.get(v["storage"], v["storage"]),
                kind="fwd" if v["kind"] == "model-fwd" else "bwd",
                kernel=v["name"],
                states=ns,
                params=len(d.params) if d else None,
                param_grads=bool(d.param_grads) if d else None,
                regs=v["regs"],
                stack=v["stack"],
                local=v["local"],
                spill_ins=v["spill_ins"],
                spill_bytes=v["spill_bytes"],
                spill_in_loop=v["spill_in_loop"],
                spill_in_loop_bytes=v["spill_in_loop_bytes"],
                spill_segments=segs,
                occupancy=v["occupancy"],
                blocks_per_sm=v["blocks_per_sm"],
                block=v["block"],
                span=H if v["kind"] == "model-bwd" else None,
                span_sass=span_sass,
                time_loops=len([x for x in v["loops"] if x["k"]]),
                loop=(
                    dict(
                        head=lp["head"],
                        k=lp["k"],
                        loads=fmt_ops(lp["ops"], "load"),
                        stores=fmt_ops(lp["ops"], "store"),
                        inflight=lp["inflight"],
                    )
                    if lp
                    else None
                ),
                modes=modes,
            )
        )
    order = {n: i for i, n in enumerate(model_decls_order())}
    rows.sort(
        key=lambda r: (
            order.get(r["model"], 99),
            r["variant"] if r["states"] is None else decls[r["struct"]][1].variants.index(r["variant"]),
            DTYPE_ORDER.index(r["dtype"]) if r["dtype"] in DTYPE_ORDER else 9,
            r["kind"] != "fwd",
        )
    )
    return rows


def model_decls_order():
    return [name for name, _ in sorted(model_decls().values(), key=lambda nd: nd[1].id)]


def model_kernels_only(so, arch, workdir, cuobjdump, block=256):
    """Analysis of the declared-model kernels alone: the arch's model_*.cubin of the extension (a few
    seconds, where the whole report disassembles every cubin)."""
    d = Path(workdir)
    run([cuobjdump, "-xelf", "model_", os.path.abspath(so)], cwd=d)
    sass, res = [], []
    for c in sorted(d.glob(f"model_*.{arch}.cubin")):
        sass.append(run([cuobjdump, "-sass", str(c)]))
        res.append(run([cuobjdump, "-res-usage", str(c)]))
    return analyze_module("\n".join(sass), "\n".join(res), arch, lambda kind, args: block)


def model_section(rows, P, block, K, pct):
    """The Markdown section of the declared-model kernels (rows: model_rows)."""
    decls = {n: d for n, d in model_decls().values()}
    P("## Declared-model kernels (csrc/kernels/model_kernels.cuh)\n")
    if not rows:
        P("No `model_fwd_kernel` / `model_bwd_kernel` in this build.\n")
        return
    names = model_decls_order()
    P(
        f"`model_fwd_kernel<M, V, T>` and `model_bwd_kernel<M, V, SG_ANY, T>` (the surrogate chosen at run time) for every "
        f"model × variant of `snn_cuda/_model_list.py` ({', '.join(MODEL_TITLES.get(n, n) for n in names)}) and storage dtype, "
        f"launched by `csrc/cuda/model_launch_impl.cuh` in blocks of `snn::kBlockThreads` = {block}. "
        "**B / neuron-step** is analytic, from the model's declaration (kStates states and kParams parameters in the state "
        "type S: fp32 for 16-bit storage; storage type T; checkpoints every kChunk = "
        f"{K} steps): what the mode must move through DRAM.\n"
    )
    P(
        "- forward modes: **inference** = x (T) + spikes (T); **train** (`save`) = + the checkpoint, kStates·S per kChunk "
        "steps; **states** (`return_states`) = + `state_seq`, kStates·S per step; **states + train** = both."
    )
    P(
        "- backward modes (always from the checkpoints): **spike loss** = grad_spikes (T) + x (T) + grad_x (T) + checkpoint "
        "kStates·S / kChunk; **+ grad_state_seq** = + kStates·S per step (a loss on the returned state sequences)."
    )
    P(
        "- **issued B / step, SASS check**: ✓ when one kChunk-step iteration of a SASS time loop of the kernel can carry the "
        "mode (the one-state rule: for every (load/store, width), unconditional ops ≤ the mode's ops ≤ all ops); the figure "
        "is then the global load/store bytes per step that loop issues in the mode. It exceeds the unique bytes in the "
        "backward: each replay span (`BwdSpan`: the whole chunk, half of it for AdLIF, whose 3 states × 8 steps do not fit "
        "a quarter of the register cap) re-reads x from the chunk's start and reloads the checkpoint, and each backward "
        "step reads x_t again (L1/L2 hits on lines the replay just read). A range where a width class mixes streams "
        "(fp32/fp64: x, grad_spikes, checkpoints and grad_state_seq are all 32/64-bit) and the compiler kept the last "
        "x of some spans in a register. The time-loop ops are conditional (`k < len` guards) but for the forward's "
        "checkpoint stores, so the check shows that the "
        "loop can carry the mode, not which ops a given call executes; parameters, state0, state_last, grad_state_last, "
        "grad_state0 and grad_params move once per neuron, outside the time loop, and are listed per model, not cross-checked."
    )
    P(
        "- **spill ops**: `STL`/`LDL` inside the time loop per kChunk-step iteration (their bytes per step in local memory, "
        "and in how many of the loop's step segments, cut at the per-step grad_x stores, they sit: a per-step spill shows "
        "in every segment), and outside it (once per neuron).\n"
    )
    hdr = (
        "| kernel | dtype | regs | stack B | spill ops: time loop / outside | occupancy (blocks/SM) | steps / iter | "
        "loop loads / iter | loop stores / iter | loads in flight | B / neuron-step: fwd inference · train · states · "
        "states + train; bwd spike loss · + grad_state_seq | issued B / step, SASS check | regs ≤ 64, no spill, occ ≥ 50 % |"
    )
    for name in names:
        mine = [r for r in rows if r["model"] == name]
        d = decls[name]
        ns, npar = len(d.states), len(d.params)
        P(
            f"### {MODEL_TITLES.get(name, name)} (`{d.struct}`): states {', '.join(d.states)}; parameters "
            f"{', '.join(d.params)}; variants {', '.join(d.variants)}; parameter gradients {'yes' if d.param_grads else 'no'}\n"
        )
        if not mine:
            P("Not in this build.\n")
            continue
        P(
            f"Per neuron, outside the time loop: the forward reads the parameters ({npar}·S, one column of the "
            f"[{npar}, P] tensor) and state0 ({ns}·S) if given, and writes state_last ({ns}·S); the backward reads the "
            f"parameters and grad_state_last ({ns}·S) if given, and writes grad_state0 ({ns}·S)"
            + (f" and, when asked, the per-neuron parameter gradient sums ({npar}·S)." if d.param_grads else ".")
            + f" Per neuron-step that is ÷ T (S = 4 B: fwd ≤ {4 * (npar + 2 * ns)} B / T, bwd ≤ "
            f"{4 * (npar + 2 * ns + (npar if d.param_grads else 0))} B / T).\n"
        )
        P(hdr)
        P("|" + "|".join(["---"] * (hdr.count("|") - 1)) + "|")
        for r in mine:
            modes = list(r["modes"].values())
            bytes_ = " · ".join(f"{m['bytes']:g}" for m in modes)

            def iss(m):
                if not m["sass_consistent"]:
                    return "no loop"
                lo, hi = m["issued"]
                return f"✓ {lo:g}" if lo == hi else f"✓ {lo:g}–{hi:g}"

            checks = " · ".join(iss(m) for m in modes)
            lp = r["loop"] or {}
            sp = "0"
            if r["spill_ins"]:
                sp = f"{r['spill_in_loop']}"
                if r["spill_in_loop"] and lp.get("k"):
                    sp += f" ({r['spill_in_loop_bytes'] / lp['k']:g} B/step"
                    if r["spill_segments"]:
                        sp += f"; in {r['spill_segments'][0]} of {r['spill_segments'][1]} step segments"
                    sp += ")"
                sp += f" / {r['spill_ins'] - r['spill_in_loop']}"
            ok = r["regs"] <= 64 and not r["spill_bytes"] and not r["local"] and not r["stack"] and r["occupancy"] >= 50
            kname = f"{r['kind']} {r['variant']}" + (f" (span {r['span']})" if r["kind"] == "bwd" else "")
            P(
                f"| {kname} | {r['dtype']} | {r['regs']} | {r['stack']} | {sp} | {pct(r['occupancy'])} "
                f"({r['blocks_per_sm']}) | {lp.get('k', '—')} | {lp.get('loads', '—')} | {lp.get('stores', '—')} | "
                f"{lp.get('inflight', '—')} | {bytes_} | {checks} | {'yes' if ok else 'NO'} |"
            )
        P("")

    sp = [r for r in rows if r["span_sass"] is not None]
    if sp:
        bad = [r for r in sp if r["span_sass"] != r["span"]]
        P(
            "The replay span as compiled, from the 16-bit backward SASS (its 32-bit loads are the checkpoint reloads, "
            "kStates per span, and grad_state_seq, kStates per step): "
            + ", ".join(
                f"{MODEL_TITLES.get(r['model'], r['model'])} {r['variant']} {r['span_sass']:g}"
                for r in sp
                if r["dtype"] == "fp16"
            )
            + (
                " steps: as `BwdSpan` gives for every fp16 and bf16 backward."
                if not bad
                else "; NOT as `BwdSpan` gives for " + ", ".join(f"{r['model']} {r['dtype']}" for r in bad) + "."
            )
            + " (fp32/fp64: one width for every stream, not separable.)\n"
        )

    P("### Model kernels by dtype\n")
    P(
        "| kind | dtype | kernels | regs (min–max) | kernels with stack (max B) | spill ops in time loops | "
        "occupancy (min–max) | modes SASS-consistent |"
    )
    P("|---|---|---|---|---|---|---|---|")
    for kind in ("fwd", "bwd"):
        for dtype in DTYPE_ORDER:
            g = [r for r in rows if r["kind"] == kind and r["dtype"] == dtype]
            if not g:
                continue
            st = [r for r in g if r["stack"] or r["spill_ins"]]
            nm = sum(len(r["modes"]) for r in g)
            ok = sum(m["sass_consistent"] for r in g for m in r["modes"].values())
            P(
                f"| {kind} | {dtype} | {len(g)} | {min(r['regs'] for r in g)}–{max(r['regs'] for r in g)} | "
                f"{len(st)}{' (%d)' % max(r['stack'] for r in st) if st else ''} | "
                f"{sum(r['spill_in_loop'] for r in g)} | {pct(min(r['occupancy'] for r in g))}–"
                f"{pct(max(r['occupancy'] for r in g))} | {ok} of {nm} |"
            )
    P("")

    # The figures measured before with nvcc -Xptxas -v, against the SASS of this build.
    def regs(pred):
        g = [r["regs"] for r in rows if pred(r)]
        return (min(g), max(g)) if g else (None, None)

    narrow = regs(lambda r: r["dtype"] != "fp64")
    f64b = regs(lambda r: r["dtype"] == "fp64" and r["kind"] == "bwd")
    f64b_stack = max(
        (r["stack"] + r["spill_ins"] for r in rows if r["dtype"] == "fp64" and r["kind"] == "bwd"), default=0
    )
    spilled = [r for r in rows if r["stack"] or r["spill_ins"]]
    P("**Against the earlier `nvcc -Xptxas -v` figures (sm_90):**\n")
    P(
        f"- fp32/fp16/bf16 ≤ 64 registers: {narrow[0]}–{narrow[1]} here, "
        + ("confirmed." if narrow[1] is not None and narrow[1] <= 64 else "NOT confirmed.")
    )
    P(
        f"- fp64 backward 90–128 registers, no spill: {f64b[0]}–{f64b[1]}, "
        + ("no stack and no STL/LDL: confirmed." if not f64b_stack else "with spills: NOT confirmed.")
        + (" (The fp64 forward: %d–%d.)" % regs(lambda r: r["dtype"] == "fp64" and r["kind"] == "fwd"))
    )
    if spilled:
        desc = []
        for r in spilled:
            lp = r["loop"] or {}
            seg = r["spill_segments"]
            desc.append(
                f"{MODEL_TITLES.get(r['model'], r['model'])} {r['kind']} {r['dtype']}: {r['stack']} B stack, "
                f"{r['spill_in_loop']} STL/LDL per {lp.get('k', '?')}-step iteration of the time loop"
                + (f" in {seg[0]} of its {seg[1]} step segments" if seg else "")
                + f", {r['spill_ins'] - r['spill_in_loop']} outside"
            )
        per_step = any(r["spill_segments"] and r["spill_segments"][0] == r["spill_segments"][1] for r in spilled)
        P(
            "- AdLIF fp32/16-bit backward 16–24 B of stack, loaded/stored once per half-chunk: "
            + "; ".join(desc)
            + ". "
            + (
                "Some spill sits in every step segment: per step, NOT once per span."
                if per_step
                else "No spill sits in every step segment: the spill traffic is per replay span (the kernel's half-chunk), "
                "not per step, as measured before."
            )
        )
    else:
        P("- AdLIF fp32/16-bit backward 16–24 B of stack: no model kernel has stack or STL/LDL in this build.")
    P("")


# ----------------------------------------------------------------------------- cubin extraction
def dump(tool_cuobjdump, path, arch):
    res = run([tool_cuobjdump, "-res-usage", "-arch", arch, path])
    sass = run([tool_cuobjdump, "-sass", "-arch", arch, path])
    return sass, res


def dump_fast(tool_cuobjdump, tool_nvdisasm, path, arch, workdir):
    """Extract the arch's cubins (-xelf) and disassemble them in parallel."""
    if path.endswith(".cubin"):
        return dump(tool_cuobjdump, path, arch)
    listing = run([tool_cuobjdump, "-lelf", path])
    cubins = re.findall(r"ELF file\s+\d+:\s+(\S+\.%s\.cubin)" % arch, listing)
    if not cubins:
        return dump(tool_cuobjdump, path, arch)
    d = Path(workdir)
    run([tool_cuobjdump, "-xelf", "all", os.path.abspath(path)], cwd=d)
    procs = []
    for c in cubins:
        procs.append(
            (
                c,
                subprocess.Popen([tool_cuobjdump, "-sass", str(d / c)], stdout=subprocess.PIPE, text=True),
                subprocess.Popen([tool_cuobjdump, "-res-usage", str(d / c)], stdout=subprocess.PIPE, text=True),
            )
        )
    sass, res = [], []
    for c, ps, pr in procs:
        sass.append(ps.communicate()[0])
        res.append(pr.communicate()[0])
    return "\n".join(sass), "\n".join(res)


# ----------------------------------------------------------------------------- SpikingJelly
SJ_WRAPPER = r"""
#include "lif/kernels.cuh"
// Taking a kernel template's address instantiates it (linear = contiguous layout).
void* sj_lif_kernels[] = {
  (void*)&lif_forward<float, SjLinearLayout>,
  (void*)&lif_forward<__half, SjLinearLayout>,
  (void*)&lif_forward<__nv_bfloat16, SjLinearLayout>,
  (void*)&lif_forward<double, SjLinearLayout>,
  (void*)&lif_backward<float, 1, 1, SjLinearLayout>,
  (void*)&lif_backward<__half, 1, 1, SjLinearLayout>,
  (void*)&lif_backward<__nv_bfloat16, 1, 1, SjLinearLayout>,
  (void*)&lif_backward<double, 1, 1, SjLinearLayout>,
  (void*)&lif_backward<float, 1, 2, SjLinearLayout>,
  (void*)&lif_backward<__half, 1, 2, SjLinearLayout>,
  (void*)&lif_backward<__nv_bfloat16, 1, 2, SjLinearLayout>,
};
"""


def build_spikingjelly(workdir, arch, version="2.0.0", log=print):
    """Download SpikingJelly's sdist (wheel as fallback) and compile its LIF kernels; cubin path or None."""
    nvcc = find_tool("nvcc")
    if not nvcc:
        log("spikingjelly: nvcc not found, skipped")
        return None, "nvcc not found"
    wd = Path(workdir) / "sj"
    wd.mkdir(parents=True, exist_ok=True)
    src_root = None
    for extra in (["--no-binary", ":all:"], []):
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    *extra,
                    f"spikingjelly=={version}",
                    "-d",
                    str(wd / "dl"),
                ],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except Exception as e:
            log(f"spikingjelly: pip download {' '.join(extra)} failed: {e}")
            continue
        for f in sorted((wd / "dl").iterdir()):
            try:
                if f.name.endswith(".tar.gz"):
                    with tarfile.open(f) as tf:
                        tf.extractall(wd / "src")
                elif f.suffix == ".whl":
                    import zipfile

                    zipfile.ZipFile(f).extractall(wd / "src")
            except Exception as e:
                log(f"spikingjelly: cannot unpack {f.name}: {e}")
        hits = sorted(glob.glob(str(wd / "src" / "**" / "lif" / "kernels.cuh"), recursive=True))
        if hits:
            src_root = Path(hits[0]).parent.parent
            break
    if src_root is None:
        return None, "SpikingJelly LIF kernels.cuh not found"
    # Mirror the headers the LIF kernels need, with native_layout.cuh cut down to
    # its torch-free linear layout (the rest includes ATen).
    mirror = wd / "mirror"
    (mirror / "lif").mkdir(parents=True, exist_ok=True)
    for rel in ("lif/kernels.cuh", "_cuda.cuh", "cuda_surrogate.cuh"):
        shutil.copy(src_root / rel, mirror / rel)
    layout = (src_root / "native_layout.cuh").read_text()
    m = re.search(r"struct SjLinearOffsets.*?\n};\n\s*struct SjLinearLayout.*?\n};\n", layout, re.S)
    if not m:
        return None, "SjLinearLayout not found in native_layout.cuh"
    (mirror / "native_layout.cuh").write_text("#pragma once\n#include <cstdint>\n" + m.group(0))
    (mirror / "sj_lif_wrapper.cu").write_text(SJ_WRAPPER)
    cubin = wd / f"sj_lif.{arch}.cubin"
    cmd = [
        nvcc,
        "-O3",
        "--fmad=false",
        "-std=c++17",
        f"-arch={arch}",
        "-cubin",
        "-Xptxas",
        "-v",
        "-o",
        str(cubin),
        str(mirror / "sj_lif_wrapper.cu"),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    (wd / "ptxas.log").write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        return None, "nvcc failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]
    return str(cubin), " ".join(["nvcc", *cmd[1:-3], "sj_lif_wrapper.cu"])


# ----------------------------------------------------------------------------- report
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("so", nargs="?", help="extension .so or .cubin (default: snn_cuda/_C*.so)")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_static_report.md"))
    ap.add_argument("--spikingjelly", action="store_true", help="download + compile SpikingJelly 2.0.0 LIF kernels")
    ap.add_argument("--params-h", default=str(REPO / "csrc" / "kernels" / "params.h"))
    ap.add_argument("--keep", help="keep intermediate files in this directory")
    a = ap.parse_args(argv)

    so = a.so or default_so()
    if not so or not Path(so).exists():
        sys.exit(
            "no compiled extension found (build it: CUDA_HOME=/usr/local/cuda python setup.py build_ext --inplace)"
        )
    cuobjdump, nvdisasm = find_tool("cuobjdump"), find_tool("nvdisasm")
    if not cuobjdump:
        sys.exit("cuobjdump not found (pip install triton, or set CUDA_HOME)")
    block = read_header_int(a.params_h, "kBlockThreads", 256)
    K = read_header_int(a.params_h, "kChunk", 0)
    common_h = Path(a.params_h).with_name("common.h")
    model_names = read_enum(common_h, "MODEL_") or {0: "LIF", 1: "IF", 2: "LEAKY"}
    reset_names = read_enum(common_h, "RESET_") or {0: "HARD", 1: "SOFT", 2: "NONE"}
    # The surrogate enum moved to the generated surrogate_list.h; either header may hold it.
    sg_enum = read_enum(common_h, "SG_") | read_enum(common_h.with_name("surrogate_list.h"), "SG_")
    sg_names = {v: n for v, n in sg_enum.items() if n != "COUNT"}
    atan = next((v for v, n in sg_names.items() if n == "ATAN"), 1)

    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="snn_static_"))
    work.mkdir(parents=True, exist_ok=True)
    sass, res = dump_fast(cuobjdump, nvdisasm, so, a.arch, work)
    if not sass.strip():
        sys.exit(f"no {a.arch} SASS in {so}")
    ours = analyze_module(sass, res, a.arch, lambda kind, args: block)
    ours = {k: v for k, v in ours.items() if "snn::" in v["name"] or v["name"].startswith("snn")}
    # A kChunk in the source that the compiled kernels do not use (stale .so):
    # the chunk-granular modes then simply find no matching loop.

    decls = model_decls()

    def label(v):
        args = v["args"]
        try:
            if v["kind"] in ("fwd", "bwd"):
                s = f"{model_names.get(int(args[0]), args[0])}/{reset_names.get(int(args[1]), args[1])}"
                if v["kind"] == "bwd":
                    s += "/" + sg_names.get(int(args[2]), args[2])
                return s
            if v["kind"] in ("model-fwd", "model-bwd"):
                struct = args[0].split("::")[-1]
                d = decls.get(struct, (None, None))[1]
                s = f"{struct}/{d.variants[int(args[1])] if d else args[1]}"
                if v["kind"] == "model-bwd":
                    s += "/" + ("SG_ANY" if int(args[2]) < 0 else sg_names.get(int(args[2]), args[2]))
                return s
        except (ValueError, IndexError):
            pass
        return ",".join(x for x in args if x not in TYPE_SIZES)

    def dt(v):
        return DTYPE_NAMES.get(v["storage"], v["storage"] or "-")

    def s_size(v):
        return 8 if v["storage"] == "double" else 4

    sj_res, sj_how = None, None
    if a.spikingjelly:
        cubin, sj_how = build_spikingjelly(work, a.arch, log=lambda m: print(m, file=sys.stderr))
        if cubin:
            ssass, sres = dump(cuobjdump, cubin, a.arch)
            sj_res = analyze_module(
                ssass,
                sres,
                a.arch,
                lambda kind, args: (
                    256 // int(args[2]) if kind == "bwd" and len(args) > 2 and args[2].isdigit() else 256
                ),
            )
    sj_bytes = {}
    for v in (sj_res or {}).values():
        for mode, mops in sj_modes(v["kind"], v["t"]).items():
            if v["kind"] in ("fwd", "bwd") and match_mode(v, mops, 0):
                sj_bytes.setdefault(DTYPE_NAMES.get(v["storage"]), {})[v["kind"]] = mode_bytes(mops, 0)
    lines, rows_json = [], []
    P = lines.append
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    P(f"# snn_cuda static GPU report ({a.arch})\n")
    P(
        f"- generated {now} by `benchmarks/gpu_static_report.py` from `{os.path.relpath(so, REPO) if str(so).startswith(str(REPO)) else so}`"
        f" ({Path(so).stat().st_size / 2**20:.1f} MiB, modified {datetime.datetime.fromtimestamp(Path(so).stat().st_mtime).strftime('%Y-%m-%d %H:%M')})"
    )
    P(
        f"- cuobjdump {tool_version(cuobjdump)}; nvdisasm {tool_version(nvdisasm)}; nvcc {tool_version(find_tool('nvcc'))}"
    )
    P(
        f"- arch {a.arch} (H100 limits: 65536 regs/SM, 2048 threads/SM, 32 blocks/SM, registers allocated per warp in units of 256);"
        f" block size `snn::kBlockThreads` = {block}; `snn::kChunk` in csrc/kernels/params.h = {K or 'absent'}"
    )
    P(f"- kernels in the {a.arch} cubins: {len(ours)}")
    newer = (
        [
            str(f.relative_to(REPO))
            for f in sorted((REPO / "csrc").rglob("*"))
            if f.suffix in (".h", ".cuh", ".cu") and f.stat().st_mtime > Path(so).stat().st_mtime
        ]
        if str(so).endswith(".so")
        else []
    )
    if newer:
        P(
            f"- **note: the .so is older than {', '.join(newer)}** — this report describes the kernels as built, not the current source"
        )
    P("")

    # ---- main table
    P("## Representative kernels: LIF, hard reset (backward: ATan surrogate)\n")
    hdr = (
        "| kernel | dtype | mode | regs | spill B | local B | occupancy | loop loads / iter | loop stores / iter | steps / iter | loads in flight | "
        "B / neuron-step | SASS check | regs ≤ 64, no spill, occ ≥ 50 % |"
    )
    P(hdr)
    P("|" + "|".join(["---"] * (hdr.count("|") - 1)) + "|")
    fb_totals = defaultdict(dict)

    def pick(kind, dtype):
        for m, v in ours.items():
            if v["kind"] != kind or dt(v) != dtype:
                continue
            try:
                ok = int(v["args"][0]) == 0 and int(v["args"][1]) == 0 and (kind == "fwd" or int(v["args"][2]) == atan)
            except (ValueError, IndexError):
                ok = False
            if ok:
                return v
        return None

    for dtype in DTYPE_ORDER:
        for kind in ("fwd", "bwd"):
            v = pick(kind, dtype)
            if not v:
                continue
            modes = snn_modes(kind, v["t"], s_size(v), K)
            for mode, mops in modes.items():
                b = mode_bytes(mops, K)
                hit = match_mode(v, mops, K)
                basic_ok = v["regs"] <= 64 and v["spill_bytes"] == 0 and not v["local"] and v["occupancy"] >= 50
                if hit:
                    _, lp, exp = hit
                    lds, sts = fmt_ops(lp["ops"], "load"), fmt_ops(lp["ops"], "store")
                    steps, inflight = str(lp["k"]) + ("*" if lp.get("k_inferred") else ""), lp["inflight"]
                    sass_bytes = sum(w * n for (_, w), n in exp.items()) / 8 / lp["k"]
                    check = f"✓ loop 0x{lp['head']:x}: {sass_bytes:g} B"
                    fb_totals[dtype].setdefault(mode if kind == "fwd" else "bwd " + mode, b)
                else:
                    lds = sts = steps = inflight = "—"
                    check = "no loop in this build"
                P(
                    f"| {'fwd' if kind == 'fwd' else 'bwd'} {label(v)} | {dtype} | {mode} | {v['regs']} | {v['spill_bytes']} | "
                    f"{v['local']} | {pct(v['occupancy'])} | {lds} | {sts} | {steps} | {inflight} | {b:g} | {check} | "
                    f"{'yes' if basic_ok else 'NO'} |"
                )
                rows_json.append(
                    dict(
                        kernel=v["name"],
                        dtype=dtype,
                        mode=mode,
                        regs=v["regs"],
                        spill_bytes=v["spill_bytes"],
                        local=v["local"],
                        occupancy=v["occupancy"],
                        bytes_per_step=b,
                        sass_consistent=bool(hit),
                        loop=(
                            dict(
                                head=hit[1]["head"],
                                k=hit[1]["k"],
                                loads=fmt_ops(hit[1]["ops"], "load"),
                                stores=fmt_ops(hit[1]["ops"], "store"),
                                inflight=hit[1]["inflight"],
                            )
                            if hit
                            else None
                        ),
                    )
                )
    P("")

    # ---- fwd+bwd byte targets
    P("## Bytes per neuron-step, forward + backward (training), against the targets\n")
    P(
        "| dtype | save-h (fwd save-h + bwd save-h) | recompute (fwd checkpoint + bwd recompute) | target | recompute meets target | "
        "SpikingJelly 2.0.0 (save-h, fp32 h) |"
    )
    P("|---|---|---|---|---|---|")
    targets = {"fp32": 21, "fp16": 11, "bf16": 11}
    sj_ref = {
        d: (f"{b['fwd'] + b['bwd']:g} (fwd {b['fwd']:g} + bwd {b['bwd']:g}, from its SASS)" if len(b) == 2 else "—")
        for d, b in sj_bytes.items()
    }
    if not sj_bytes:
        sj_ref = {
            "fp32": "24 (its source; not compiled in this run)",
            "fp16": "16 (its source)",
            "bf16": "16 (its source)",
        }
    for dtype in DTYPE_ORDER:
        f = fb_totals.get(dtype, {})
        sh = f.get("save-h", None), f.get("bwd save-h", None)
        rc = f.get("checkpoint (recompute)", None), f.get("bwd recompute", None)
        shs = f"{sh[0] + sh[1]:g}" if None not in sh else "—"
        rcs = f"{rc[0] + rc[1]:g}" if None not in rc else "not in this build"
        tg = targets.get(dtype)
        met = "—" if tg is None or None in rc else ("yes" if rc[0] + rc[1] <= tg else "NO")
        P(f"| {dtype} | {shs} | {rcs} | {'≤ %d' % tg if tg else '—'} | {met} | {sj_ref.get(dtype, '—')} |")
    P("")

    # ---- NeuronLinear
    P("## NeuronLinear on CUDA: bytes per neuron-step through the spike tensor\n")
    nl_json = []
    try:
        decisions = {}
        for dname in ("fp32", "bf16"):
            rows_nl, decisions[dname] = neuron_linear_traffic(dname)
            nl_json += rows_nl
        P(
            "Traced op by op (`neuron_linear_traffic`: a dispatch mode counts the spike tensor's bytes written by the neuron "
            "op and read/written by every op that takes a tensor derived from it, views free; one training step of a Leaky "
            "layer, T×B×N = 8×16×256, K = 10 outputs) — except the *before* row, computed from the CUDA path it had. "
            "On fake CUDA tensors the NeuronLinear forward asks the neuron for spikes in uint8: "
            + ", ".join(f"{d} {'yes' if u else 'no'}" for d, u in decisions.items())
            + " (no = spikes in x's dtype, straight into cuBLAS).\n"
        )
        P("| impl | dtype | fwd B | bwd B | total B | ops fwd / bwd | ≤ neuron + nn.Linear |")
        P("|---|---|---|---|---|---|---|")
        for dname in ("fp32", "bf16"):
            ref = next(r for r in nl_json if r["dtype"] == dname and r["impl"] == "neuron + nn.Linear")
            ref_total = ref["fwd_B"] + ref["bwd_B"]
            for r in (r for r in nl_json if r["dtype"] == dname):
                tot = r["fwd_B"] + r["bwd_B"]
                r["total_B"] = tot
                cmp_ = "—" if r is ref else ("yes" if tot <= ref_total else "NO")
                if "CPU path" in r["impl"]:
                    cmp_ += " (CPU)"
                P(
                    f"| {r['impl']} | {dname} | {r['fwd_B']:g} | {r['bwd_B']:g} | {tot:g} | "
                    f"{r['fwd_launches']} / {r['bwd_launches']} | {cmp_} |"
                )
        P(
            "\nOn CUDA the GEMM (cuBLAS) reads the spikes as floats whatever the neuron writes, so bytes only add passes: "
            "NeuronLinear there writes them in x's dtype, the GEMM reads them, and they are what the weight gradient "
            "reads — exactly neuron + nn.Linear, in one autograd node. A direct `snn_cuda.spike_linear` call on CUDA "
            "widens its uint8 input in one pass (the `uint8_to` kernel: 1 B read, t B written) before the GEMM. "
            "The CPU path keeps the bytes: its kernels read them directly.\n"
        )
    except Exception as e:  # the report's kernel part must not depend on this
        P(f"Not computed: {type(e).__name__}: {e}\n")

    # ---- declared models
    model_json = model_rows(ours, K, block)
    model_section(model_json, P, block, K, pct)

    # ---- all kernels
    P("## All kernels in the extension\n")
    P(
        "| kind | dtype | kernels | regs (min–max) | max-reg kernel | spills (STL/LDL) | stack / local B | occupancy (min–max) | "
        "blocks/SM = grid wave per SM (min–max) | waves at the old 8/SM cap | "
        "loads in flight (min over loops) | ≤ 64 regs & ≥ 50 % |"
    )
    P("|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups = defaultdict(list)
    for v in ours.values():
        groups[(v["kind"], dt(v))].append(v)
    for kind, dtype in sorted(groups, key=lambda q: (q[0], DTYPE_ORDER.index(q[1]) if q[1] in DTYPE_ORDER else 9)):
        g = [v for v in groups[(kind, dtype)] if v["regs"] is not None]
        if not g:
            continue
        mx = max(g, key=lambda v: v["regs"])
        infl = [lp["inflight"] for v in g for lp in v["loops"] if any(o["kind"] == "load" for o in lp["ops"])]
        bad = [v for v in g if v["regs"] > 64 or v["occupancy"] < 50]
        bps = [v["blocks_per_sm"] for v in g if v.get("blocks_per_sm")]
        old_cap = 2048 // block
        waves = sorted({round(old_cap / b, 2) for b in bps})
        P(
            f"| {kind} | {dtype} | {len(g)} | {min(v['regs'] for v in g)}–{mx['regs']} | {label(mx)} | "
            f"{sum(v['spill_ins'] for v in g)} | {max(v['stack'] for v in g)} / {max(v['local'] for v in g)} | "
            f"{min(v['occupancy'] for v in g):.1f}–{max(v['occupancy'] for v in g):.1f} % | "
            f"{min(bps) if bps else '—'}–{max(bps) if bps else '—'} | "
            f"{'–'.join(f'{w:g}' for w in (waves[0], waves[-1])) if waves else '—'} | {min(infl) if infl else '—'} | "
            f"{'all' if not bad else '%d fail' % len(bad)} |"
        )
    allk = [v for v in ours.values() if v["regs"] is not None]
    if allk:
        mx = max(allk, key=lambda v: v["regs"])
        mn = min(allk, key=lambda v: v["occupancy"])
        spills = sum(v["spill_ins"] for v in allk) + sum(v["stack"] + v["local"] for v in allk)
        over = [v for v in allk if v["regs"] > 64]
        P("")
        P(
            f"**Summary over all {len(allk)} kernels:** max registers {mx['regs']} (`{mx['name']}`); "
            f"spills: {'none' if not spills else 'YES'} (STL/LDL instructions {sum(v['spill_ins'] for v in allk)}, "
            f"max stack {max(v['stack'] for v in allk)} B, max local {max(v['local'] for v in allk)} B"
            + (
                "; in "
                + ", ".join(
                    sorted(
                        {
                            f"`{label(v)} {dt(v)} {v['kind']}`"
                            for v in allk
                            if v["spill_ins"] or v["stack"] or v["local"]
                        }
                    )
                )
                if spills
                else ""
            )
            + "); "
            f"min occupancy {mn['occupancy']:.1f} % (`{mn['name']}`); kernels over 64 registers: {len(over)}."
        )
        if over:
            P("")
            srt = sorted(over, key=lambda v: -v["regs"])
            P(
                "Kernels over 64 registers (highest first): "
                + "; ".join(f"`{label(v)} {dt(v)} {v['kind']}` {v['regs']}" for v in srt[:12])
                + (f"; … and {len(srt) - 12} more (all in the .json)" if len(srt) > 12 else "")
            )
        bad_main = [
            r for r in rows_json if r["sass_consistent"] and (r["regs"] > 64 or r["spill_bytes"] or r["occupancy"] < 50)
        ]
        n_bad = len([v for v in allk if v["regs"] > 64 or v["occupancy"] < 50])
        reg_verdict = "met by every kernel" if not n_bad else f"NOT met by {n_bad} of {len(allk)} kernels"
        if bad_main:
            names = sorted({r["dtype"] + " " + r["kernel"].split("::")[1].split("<")[0] for r in bad_main})
            reg_verdict += " (including the representative " + ", ".join(names) + ")"
        P("")
        P(
            f"**Verdict:** spills {'none' if not spills else 'PRESENT'}; ≤ 64 registers / ≥ 50 % occupancy: {reg_verdict}; "
            "byte targets: see the fwd + bwd table."
        )
    P("")

    # ---- SpikingJelly
    sj_json = None
    P("## SpikingJelly 2.0.0 native CUDA LIF (compiled here)\n")
    if a.spikingjelly:
        how = sj_how
        if sj_res:
            sj = sj_res
            P(
                f"Built from the PyPI sdist's `ops/lif/kernels.cuh` (contiguous `SjLinearLayout` instantiations, as its launcher uses"
                f" for dense tensors) with `{how}`; block size 256 (backward `Elements=2`: 128, used when N ≥ 2^21 with hard reset"
                f" or detach_reset). State and saved h are fp32 for every storage dtype.\n"
            )
            P(
                "| kernel | dtype | regs | spill B | local B | occupancy | loop loads / iter | loop stores / iter | steps / iter | "
                "loads in flight | B / neuron-step | SASS check |"
            )
            P("|---|---|---|---|---|---|---|---|---|---|---|---|")
            sj_json = []
            for v in sorted(
                sj.values(),
                key=lambda v: (v["kind"] != "fwd", DTYPE_ORDER.index(dt(v)) if dt(v) in DTYPE_ORDER else 9, v["name"]),
            ):
                if v["kind"] not in ("fwd", "bwd"):
                    continue
                for mode, mops in sj_modes(v["kind"], v["t"]).items():
                    hit = match_mode(v, mops, 0)
                    b = mode_bytes(mops, 0)
                    nm = "lif_forward" if v["kind"] == "fwd" else f"lif_backward ATan, Elements={v['args'][2]}"
                    if hit:
                        lp = hit[1]
                        cells = (
                            fmt_ops(lp["ops"], "load"),
                            fmt_ops(lp["ops"], "store"),
                            lp["k"],
                            lp["inflight"],
                            f"✓ loop 0x{lp['head']:x}",
                        )
                    else:
                        cells = ("—", "—", "—", "—", "no match")
                    P(
                        f"| {nm} | {dt(v)} | {v['regs']} | {v['spill_bytes']} | {v['local']} | {pct(v['occupancy'])} | "
                        f"{cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {b:g} | {cells[4]} |"
                    )
                    sj_json.append(
                        dict(
                            kernel=v["name"],
                            dtype=dt(v),
                            regs=v["regs"],
                            spill_bytes=v["spill_bytes"],
                            local=v["local"],
                            occupancy=v["occupancy"],
                            bytes_per_step=b,
                            sass_consistent=bool(hit),
                            loop=(
                                dict(loads=cells[0], stores=cells[1], k=cells[2], inflight=cells[3]) if hit else None
                            ),
                        )
                    )
            P("")
        else:
            P(f"Skipped: {how}.\n")
    else:
        P("Not run (pass `--spikingjelly` to download the sdist from PyPI and compile its LIF kernels).\n")

    # ---- how to read
    P("## How to read\n")
    P(
        f"- **regs / spill / local / occupancy**: `cuobjdump -res-usage -arch {a.arch}` gives REG, STACK and LOCAL per function; "
        "spill B counts the bytes of `STL`/`LDL` instructions in the SASS (spill stores + loads; 0 = no spills). Occupancy is theoretical: "
        f"blocks/SM = min(⌊⌊65536 / (⌈regs·32/256⌉·256)⌋ / warps-per-block⌋, 2048 / block, 32) for the launcher's {block}-thread blocks; "
        "≤ 64 registers keeps ≥ 50 %."
    )
    P(
        "- **blocks/SM = grid wave per SM**: the resident blocks per SM above, which is what "
        "`cudaOccupancyMaxActiveBlocksPerMultiprocessor` reports for the kernel (no shared memory, a fixed block): the "
        "launchers ask it once per kernel and device and launch SMs × blocks/SM blocks at most (`snn::grid_blocks`), one "
        f"full wave, past which the kernels grid-stride. **waves at the old 8/SM cap**: the grid was SMs × {2048 // block} "
        "(the thread limit), which for these kernels is that many waves, the last one partial."
    )
    P(
        "- **loop loads / stores**: global memory instructions (`LDG`/`STG`, generic `LD`/`ST`) inside an innermost SASS loop "
        "(a backward `BRA` and its target; the compiler may emit several versions of the time loop, unswitched on which optional "
        "pointers are null), counted by width in bits; `cond` = predicated or inside a forward-branch region of the loop body "
        "(optional outputs, `k < len` tail guards, the other mode's branch), so not executed on every iteration."
    )
    P(
        "- **steps / iter**: time steps one loop iteration covers — forward: the number of x loads (every load of the forward loop is an "
        "x load); backward: the number of storage-width grad_x stores (`*` = taken from a sibling loop of the same kernel). "
        "A compiler-unrolled per-step loop shows 2–4; a `kChunk`-blocked loop shows kChunk."
    )
    P(
        "- **loads in flight**: walking the loop body in program order, the most global loads issued whose destination registers have "
        "not yet been read (a static upper bound on the memory-level parallelism of one thread; the target is ≥ 4). Loads on both sides "
        "of an if/else inside the loop (e.g. the save-h and recompute branches of one backward loop) are both counted, so for such "
        "loops the figure overstates what one mode keeps in flight."
    )
    P(
        "- **B / neuron-step** is analytic: the bytes one neuron-step must move in that mode — forward: x (storage type T) + spike (T) "
        "[+ saved h (state type S, fp32 for 16-bit storage) in save-h mode | + one checkpoint S per kChunk steps in recompute mode]; "
        "backward: grad_spike (T) + grad_x (T) + [saved h (S) | x (T) + checkpoint S / kChunk]. Optional tensors (v_seq, grad_v_seq, "
        "v0, v_last) are excluded. **SASS check** ✓ means an innermost loop of the compiled kernel carries exactly that traffic: for every "
        "(load/store, width), unconditional ops ≤ expected ops for `steps/iter` steps ≤ all ops; the bytes shown are then recomputed from "
        "those SASS op counts ÷ steps. When every op of the loop is conditional (kChunk-blocked loops guard each step with "
        "`k < len`), the check only shows that the loop can carry the mode, not which ops a given call executes. “no loop in this build” = the compiled kernel has no loop that can carry that mode (e.g. a "
        "checkpoint mode in a build older than the chunked kernels)."
    )
    P(
        "- **fwd + bwd table**: save-h = forward save-h + backward save-h, recompute = forward checkpoint + backward recompute; targets "
        "(docs/benchmarks.md): ≤ 21 B fp32, ≤ 11 B 16-bit (SpikingJelly moves 24 / 16 B). fp64 has no target."
    )
    from snn_cuda._paths import scrub_paths  # no machine paths in the report

    root = str(Path(__file__).resolve().parent.parent)
    md = scrub_paths("\n".join(lines) + "\n", root=root)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    jall = {
        m: {
            k: v[k]
            for k in (
                "name",
                "kind",
                "storage",
                "regs",
                "stack",
                "local",
                "spill_bytes",
                "spill_in_loop",
                "occupancy",
                "block",
            )
        }
        | {
            "loops": [
                dict(
                    head=lp["head"],
                    k=lp["k"],
                    inflight=lp["inflight"],
                    loads=fmt_ops(lp["ops"], "load"),
                    stores=fmt_ops(lp["ops"], "store"),
                )
                for lp in v["loops"]
            ]
        }
        for m, v in ours.items()
    }
    out.with_suffix(".json").write_text(
        json.dumps(
            dict(
                arch=a.arch,
                so=scrub_paths(str(so), root=root),
                block=block,
                kChunk=K,
                generated=now,
                main=rows_json,
                neuron_linear=nl_json,
                models=model_json,
                spikingjelly=sj_json,
                kernels=jall,
            ),
            indent=1,
        )
    )
    print(md)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
