#!/usr/bin/env bash
# CI: the source distribution is complete and builds a CPU-only install.
#
# 1. Copies the files of this checkout that git tracks or would track (not the ignored ones: no
#    venv, build outputs or data) into a scratch folder, so that the build writes nothing into the
#    checkout, and builds the sdist there with `python -m build --sdist --no-isolation`.
# 2. Checks the sdist holds every tracked file under csrc/ and no benchmark results.
# 3. Installs it with `pip install --no-build-isolation` into a fresh venv holding only the CPU-only
#    torch (SNN_CUDA_SDIST_TORCH, default torch==2.13.0), setuptools, wheel, build and numpy;
#    CUDA_HOME stays set, so this also proves a torch without CUDA gives a CPU-only build.
# 4. From a folder outside the checkout: imports snn_cuda, checks build_info() (CPU kernels yes,
#    CUDA kernels no, the version), the shipped kernel headers, and that a fused LIF equals the
#    reference (spikes and membranes bit for bit, gradients to rounding).
#
#   .ci/sdist_check.sh            (MAX_JOBS, SNN_CUDA_SDIST_TORCH, KEEP=1 to keep the scratch folder)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PY="${PYTHON:-python3}"
TORCH_SPEC="${SNN_CUDA_SDIST_TORCH:-torch==2.13.0}"
export MAX_JOBS="${MAX_JOBS:-2}"
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
    export CUDA_HOME=/usr/local/cuda
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/snn_cuda_sdist.XXXXXX")"
if [ "${KEEP:-0}" = "1" ]; then echo "scratch folder: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK/src" "$WORK/dist" "$WORK/run"
t0=$(date +%s)

echo "== sdist venv ($TORCH_SPEC, CPU-only)"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
{ "$VPY" -m pip install --upgrade pip && "$VPY" -m pip install "$TORCH_SPEC" "setuptools>=77" wheel build numpy; } \
    >"$WORK/pip.log" 2>&1 || { tail -n 40 "$WORK/pip.log"; exit 1; }
"$VPY" - <<'PY'
import torch
assert torch.version.cuda is None, f"{torch.__version__} is a CUDA build; this check wants a CPU-only torch"
print("torch", torch.__version__, "(no CUDA)")
PY

echo "== sdist (the checkout's tracked and not-ignored files)"
git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$WORK/src"
(cd "$WORK/src" && "$VPY" -m build --sdist --no-isolation --outdir "$WORK/dist" >"$WORK/sdist.log" 2>&1) \
    || { tail -n 40 "$WORK/sdist.log"; exit 1; }
SDIST="$(ls "$WORK"/dist/snn_cuda-*.tar.gz)"
tar -tzf "$SDIST" | sed 's|^[^/]*/||' | grep -v -e '/$' -e '^$' | sort >"$WORK/sdist.files"
echo "$(basename "$SDIST"): $(wc -l <"$WORK/sdist.files") files, $(du -k "$SDIST" | cut -f1) KB"
missing="$(git ls-files csrc | sort | comm -23 - "$WORK/sdist.files")"
[ -z "$missing" ] || { echo "FAIL: the sdist lacks tracked sources:"; echo "$missing"; exit 1; }
for f in LICENSE README.md CHANGELOG.md pyproject.toml setup.py MANIFEST.in snn_cuda/_version.py; do
    grep -qx "$f" "$WORK/sdist.files" || { echo "FAIL: the sdist lacks $f"; exit 1; }
done
if grep -E '^benchmarks/results/|_build_info\.py$|\.so$' "$WORK/sdist.files"; then
    echo "FAIL: the sdist holds results or build outputs (above)"; exit 1
fi

echo "== install the sdist (--no-build-isolation, CUDA_HOME=${CUDA_HOME:-unset})"
start=$(date +%s)
(cd "$WORK/run" && "$VPY" -m pip install --no-build-isolation "$SDIST" >"$WORK/install.log" 2>&1) \
    || { tail -n 60 "$WORK/install.log"; exit 1; }
echo "sdist install (CPU kernels compiled) took $(( $(date +%s) - start )) s"

echo "== import from outside the checkout"
VERSION="$("$VPY" -c "import runpy; print(runpy.run_path('$ROOT/snn_cuda/_version.py')['__version__'])")"
(cd "$WORK/run" && SNN_CUDA_ROOT="$ROOT" SNN_CUDA_VERSION="$VERSION" "$VPY" - <<'PY'
import os

import torch

import snn_cuda
from snn_cuda import cuda_source

root = os.path.realpath(os.environ["SNN_CUDA_ROOT"])
where = os.path.realpath(snn_cuda.__file__)
assert not where.startswith(root + os.sep), f"imported from the checkout: {where}"
info = snn_cuda.build_info()
print("snn_cuda", snn_cuda.__version__, "from", os.path.dirname(where))
print("build_info:", {k: info[k] for k in ("version", "torch", "extension_loaded", "cpu", "cuda", "cpu_reason")})
assert info["cpu"], f"CPU kernels are not registered: {info}"
assert not info["cuda"], "CUDA kernels in a build against a torch without CUDA"
assert info["version"] == snn_cuda.__version__ == os.environ["SNN_CUDA_VERSION"], info["version"]
kdir = cuda_source.kernel_dir()
assert kdir.parent.name == "snn_cuda" and (kdir / "neuron_kernels.cuh").is_file(), kdir

# a fused LIF against the reference: spikes and membranes bit for bit, gradients to rounding
torch.manual_seed(0)
x = (torch.randn(16, 8, 333) * 0.8 + 0.4).requires_grad_()
g = torch.randn(16, 8, 333)
out = {}
for backend in ("fused", "torch"):
    lif = snn_cuda.LIF(tau=2.0, v_reset=0.0, backend=backend, store_v_seq=True)
    xi = x.detach().clone().requires_grad_()
    s = lif(xi)
    (s * g).sum().backward()
    out[backend] = (s.detach(), lif.v_seq.detach(), xi.grad)
(sf, vf, gf), (sr, vr, gr) = out["fused"], out["torch"]
assert 0 < sf.mean() < 1, "no or only spikes: the comparison would be vacuous"
assert torch.equal(sf, sr), "fused spikes differ from the reference"
assert torch.equal(vf, vr), "fused membranes differ from the reference"
torch.testing.assert_close(gf, gr, rtol=1e-5, atol=1e-6)
print(f"fused LIF == reference ({sf.numel()} neuron-steps, firing rate {sf.mean():.3f}; "
      f"max |grad diff| {(gf - gr).abs().max():.2e})")
PY
)
echo "sdist check passed in $(( $(date +%s) - t0 )) s"
