def pytest_configure(config):
    config.addinivalue_line("markers", "emulation: runs the real CUDA __global__ kernels on the CPU under ASan/UBSan")
