def pytest_configure(config):
    config.addinivalue_line("markers", "emulation: runs the real CUDA __global__ kernels on the CPU under ASan/UBSan")
    config.addinivalue_line(
        "markers",
        "isa_sensitive: results may depend on the CPU kernels' ISA variant or thread count; CI repeats "
        "these with SNN_CUDA_CPU_ISA=avx2 / default and OMP_NUM_THREADS=1 (`-m isa_sensitive`)",
    )


# Modules whose assertions involve the CPU kernels' bits (bit-equality with the reference or an
# oracle, fixed summation orders): CI reruns them per ISA variant and on one thread. (test_isa.py
# compares the variants and thread counts itself, in subprocesses.)
_ISA_SENSITIVE = {
    "test_fused.py",
    "test_encoder.py",
    "test_spike_linear_op.py",
    "test_spike_linear_counts.py",
    "test_neuron_linear.py",
    "test_learnable.py",
    "test_multistate.py",
    "test_layouts.py",
    "test_model_state_seq.py",
    "test_model_flavours.py",
    "test_model_linear.py",
}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if item.path.name in _ISA_SENSITIVE:
            item.add_marker(pytest.mark.isa_sensitive)
