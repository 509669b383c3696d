# The one place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic]) and
# snn_cuda.__version__ / build_info() report it.
__version__ = "0.1.0"
