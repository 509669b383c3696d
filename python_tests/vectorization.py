"""Checks, on the built extension's machine code, that the CPU kernels' ISA variants did vectorise.

The CPU hot loops are written once (csrc/cpu/cpu_kernels_impl.h) and compiled once per variant
(namespaces ``snn_cpu::avx512``, ``snn_cpu::avx2``, ``snn_cpu::baseline``). A compiler that cannot
vectorise a loop does not say so: it emits scalar code, which runs 4-8x slower. This module reads
``objdump -d`` of the shared object and checks, for every kernel function of the AVX2 and AVX-512
variants (a row kernel added later is covered without listing it):

- its hot loop (the innermost loop with the most vector instructions) works on ``ymm`` (AVX2) or
  ``zmm`` (AVX-512) registers, and does no scalar floating-point arithmetic (``*ss`` / ``*sd``)
  and no call;
- no FMA instruction anywhere in the neuron kernels (every variant must round alike);
- the baseline variant uses no AVX instruction, and no function outside the variants' namespaces
  does (an inline function compiled for a wider ISA than its callers would crash older CPUs).

Runs on any x86-64 machine (it reads code, it does not run it). ``python
python_tests/vectorization.py [path/to/_C.so]`` prints the report; python_tests/test_vectorized.py
asserts it.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

#: Namespaces of the variants checked for vectors, with the register width each must use.
VARIANTS = {"avx2": "ymm", "avx512": "zmm"}
#: spike_linear's hand-written intrinsics kernels (FMA allowed there: a spike times a weight is exact).
SPIKE_LINEAR_NS = {"sl_avx2": "ymm", "sl_avx512": "zmm"}

_FUNC = re.compile(r"^([0-9a-f]+) <(.*)>:$")
_INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
_JUMP_TARGET = re.compile(r"^([0-9a-f]+)\b")
_SCALAR_FP = re.compile(
    r"^v?(add|sub|mul|div|min|max|sqrt|rcp|rsqrt|round|comi|ucomi|cmp[a-z]*|"
    r"f[n]?m(add|sub)\d*|getexp|getmant|scalef|range|reduce|rndscale)s[sd]$"
)
_FMA = re.compile(r"^v?f(n)?m(add|sub|addsub|subadd)\d+[ps][sd]$")
_VEC_REG = re.compile(r"%(xmm|ymm|zmm)\d+")


@dataclasses.dataclass
class Insn:
    addr: int
    mnem: str
    ops: str


@dataclasses.dataclass
class Loop:
    start: int
    end: int
    insns: List[Insn]

    def count(self, reg: str) -> int:
        return sum(1 for i in self.insns if f"%{reg}" in i.ops)

    def scalar_fp(self) -> List[Insn]:
        return [i for i in self.insns if _SCALAR_FP.match(i.mnem)]

    def calls(self) -> List[Insn]:
        return [i for i in self.insns if i.mnem.startswith("call")]


@dataclasses.dataclass
class FunctionReport:
    name: str
    variant: str
    reg: str
    loop: Optional[Loop]
    problems: List[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def disassemble(so_path: str) -> Dict[str, List[Insn]]:
    objdump = shutil.which("objdump")
    if objdump is None:
        raise FileNotFoundError("objdump not found (Debian package binutils)")
    out = subprocess.run(
        [objdump, "-d", "-C", "--no-show-raw-insn", so_path], capture_output=True, text=True, check=True
    ).stdout
    funcs: Dict[str, List[Insn]] = {}
    cur: Optional[List[Insn]] = None
    for line in out.splitlines():
        m = _FUNC.match(line)
        if m:
            name = m.group(2)
            cur = None if name.endswith("@plt") else funcs.setdefault(name, [])
            continue
        if cur is None:
            continue
        m = _INSN.match(line)
        if m:
            cur.append(Insn(int(m.group(1), 16), m.group(2), m.group(3)))
    return funcs


def loops(insns: List[Insn]) -> List[Loop]:
    """Innermost loops: back edges (a jump to an earlier address inside the function) whose
    range holds no other back edge."""
    if not insns:
        return []
    lo, hi = insns[0].addr, insns[-1].addr
    edges: List[Tuple[int, int]] = []
    for i in insns:
        if i.mnem.startswith("j"):
            m = _JUMP_TARGET.match(i.ops)
            if m:
                t = int(m.group(1), 16)
                if lo <= t <= i.addr <= hi:
                    edges.append((t, i.addr))
    inner = [e for e in edges if not any(o != e and e[0] <= o[0] and o[1] <= e[1] for o in edges)]
    return [Loop(s, e, [i for i in insns if s <= i.addr <= e]) for s, e in inner]


def variant_of(name: str) -> Optional[str]:
    for ns in VARIANTS:
        if f"snn_cpu::{ns}::" in name:
            return ns
    for ns in SPIKE_LINEAR_NS:
        # the function's own namespace, not a template argument's
        if re.match(rf"^([\w:<>, ]+ )?(\(anonymous namespace\)::)?{ns}::", name):
            return ns
    return None


def is_kernel(name: str, ns: str) -> bool:
    """The functions holding loops: every function of the variants but the table builders (and,
    for spike_linear, its at::parallel_for lambdas, which only split the work)."""
    if ns in SPIKE_LINEAR_NS and "{lambda" in name:
        return False
    return not any(t in name for t in ("::table()", "::neuron_rows<", "::elem_rows<"))


def check_function(name: str, insns: List[Insn], ns: str) -> FunctionReport:
    reg = {**VARIANTS, **SPIKE_LINEAR_NS}[ns]
    problems: List[str] = []
    if ns.startswith("sl_"):
        # Written with the variant's intrinsics, so vectorised by construction; its loops end
        # in the fixed lane-reduction tree (scalar adds by design). Checked: it is that variant.
        if not any(f"%{reg}" in i.ops for i in insns):
            problems.append(f"no {reg} register used")
        return FunctionReport(name, ns, reg, None, problems)
    if not ns.startswith("sl_"):
        fma = [i for i in insns if _FMA.match(i.mnem)]
        if fma:
            problems.append(f"FMA instruction {fma[0].mnem} at {fma[0].addr:#x} (the variants must round alike)")
    cands = loops(insns)
    hot = max(cands, key=lambda lp: (lp.count(reg), len(lp.insns)), default=None)
    if hot is None:
        # Straight-line code is fine where the compiler turned the loop into a call
        # (Leaky's state row is a copy: memcpy) or unrolled it; scalar arithmetic is not.
        sc = [i for i in insns if _SCALAR_FP.match(i.mnem)]
        if sc:
            problems.append("no loop, and scalar arithmetic: " + ", ".join(sorted({i.mnem for i in sc})))
    else:
        if hot.count(reg) == 0:
            problems.append(f"hot loop [{hot.start:#x}, {hot.end:#x}] uses no {reg} register")
        sc = hot.scalar_fp()
        if sc:
            problems.append(
                f"hot loop [{hot.start:#x}, {hot.end:#x}] does scalar arithmetic: "
                + ", ".join(sorted({i.mnem for i in sc}))
            )
        if hot.calls():
            problems.append(f"hot loop [{hot.start:#x}, {hot.end:#x}] calls {hot.calls()[0].ops}")
    return FunctionReport(name, ns, reg, hot, problems)


def check(so_path: str) -> Tuple[List[FunctionReport], List[str]]:
    """(one report per kernel function of the vector variants, problems found elsewhere)."""
    funcs = disassemble(so_path)
    reports: List[FunctionReport] = []
    other: List[str] = []
    for name, insns in funcs.items():
        ns = variant_of(name)
        if ns is not None:
            if is_kernel(name, ns):
                reports.append(check_function(name, insns, ns))
            continue
        # Everything else is compiled for baseline x86-64: an AVX register there means a
        # wider-ISA copy of an inline function leaked out of a variant's unit.
        wide = [i for i in insns if "%ymm" in i.ops or "%zmm" in i.ops]
        if wide:
            other.append(f"{name}: {wide[0].mnem} {wide[0].ops} at {wide[0].addr:#x} outside the vector variants")
        if "snn_cpu::baseline::" in name:
            vex = [i for i in insns if i.mnem.startswith("v") and _VEC_REG.search(i.ops)]
            if vex:
                other.append(f"{name}: AVX instruction {vex[0].mnem} in the baseline variant")
    if not any(r.variant in VARIANTS for r in reports):
        other.append(
            "no function of the snn_cpu::avx2 / snn_cpu::avx512 variants found (not an x86-64 GCC/clang build?)"
        )
    return reports, other


def summary(reports: List[FunctionReport], other: List[str]) -> str:
    lines = []
    for ns in list(VARIANTS) + list(SPIKE_LINEAR_NS):
        rs = [r for r in reports if r.variant == ns]
        if not rs:
            continue
        bad = [r for r in rs if not r.ok]
        if ns in SPIKE_LINEAR_NS:
            lines.append(
                f"{ns} (spike_linear, intrinsics): {len(rs)} functions, {len(rs) - len(bad)} on "
                f"{rs[0].reg} registers, {len(bad)} failing"
            )
            lines.extend(f"  FAIL {r.name}: " + "; ".join(r.problems) for r in bad)
            continue
        n_vec = [r.loop.count(r.reg) for r in rs if r.loop is not None]
        no_loop = sum(1 for r in rs if r.loop is None and r.ok)
        lines.append(
            f"{ns}: {len(rs)} kernels; {len(rs) - len(bad) - no_loop} with a {rs[0].reg} hot loop free of "
            f"scalar FP arithmetic and calls ({min(n_vec, default=0)}-{max(n_vec, default=0)} "
            f"{rs[0].reg} instructions per hot loop), {no_loop} loop-free (a memcpy), "
            f"{len(bad)} failing"
        )
        for r in bad:
            lines.append(f"  FAIL {r.name}: " + "; ".join(r.problems))
    for o in other:
        lines.append(f"FAIL {o}")
    return "\n".join(lines)


def extension_path() -> str:
    import importlib.util

    spec = importlib.util.find_spec("snn_cuda._C")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("snn_cuda._C is not built")
    return spec.origin


def main(argv: List[str]) -> int:
    path = argv[1] if len(argv) > 1 else extension_path()
    reports, other = check(path)
    print(f"# vectorisation check of {path.split('/')[-1]}")
    print(summary(reports, other))
    if "--list" in argv:
        for r in reports:
            print(
                f"{'ok  ' if r.ok else 'FAIL'} {r.variant:9s} {r.loop.count(r.reg) if r.loop else 0:4d} "
                f"{r.reg}  {r.name}"
            )
    return 0 if all(r.ok for r in reports) and not other else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
