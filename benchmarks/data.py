"""MNIST / Fashion-MNIST as whole-split uint8 tensors on the target device.

The benchmark and the examples never go through per-sample PIL transforms: each split is read
once from its IDX file (``.gz`` or raw) into a ``uint8`` tensor ``[N, 28, 28]`` (labels
``int64 [N]``), moved to the device once, and batches are index_select + ``/ 255`` on the
device, so no implementation is loader-bound.

Where the files are looked for, in this order, for ``--data-dir D``:

    D/MNIST/raw/<file>  or  D/FashionMNIST/raw/<file>    (torchvision's layout)
    D/<file>                                             (the IDX files directly in D)

with ``<file>`` one of ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``.
When they are missing, torchvision downloads them into ``D`` (short network timeout);
offline, :class:`DatasetUnavailable` says which files to put where.

``--dataset auto`` = MNIST when present or downloadable, else synthetic data of MNIST's shape
(class templates + noise) with a loud notice that its accuracy means nothing.

Set ``SNN_CUDA_NO_DOWNLOAD=1`` to never try the network.
"""

from __future__ import annotations

import gzip
import os
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import torch

DATASETS = ("auto", "mnist", "fashion-mnist", "synthetic")
FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
PRETTY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "synthetic": "synthetic"}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DOWNLOAD_TIMEOUT_S = 10.0

SYNTHETIC_BANNER = """
################################################################################
##  NO MNIST DATA: using SYNTHETIC data of MNIST's shape (random class        ##
##  templates + noise). Throughput and memory figures are valid; ACCURACY IS  ##
##  MEANINGLESS. For real data: --dataset mnist (downloads when online), or   ##
##  --dataset fashion-mnist --data-dir <folder holding FashionMNIST/raw>.     ##
################################################################################
"""


class DatasetUnavailable(RuntimeError):
    """The requested dataset is neither on disk nor downloadable."""


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, 28, 28]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.labels.numel())

    def to(self, device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Dataset:
    name: str  # "mnist" | "fashion-mnist" | "synthetic"
    train: Split
    test: Split
    source: str  # where it came from (a folder, "download", "generated")

    @property
    def pretty(self) -> str:
        return PRETTY[self.name]

    def to(self, device) -> "Dataset":
        return Dataset(self.name, self.train.to(device), self.test.to(device), self.source)


# ---------------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------------
_IDX_DTYPES = {
    0x08: torch.uint8,
    0x09: torch.int8,
    0x0B: torch.int16,
    0x0C: torch.int32,
    0x0D: torch.float32,
    0x0E: torch.float64,
}


def read_idx(path: str) -> torch.Tensor:
    """Reads an IDX file (``.gz`` or raw) into a tensor of its stored type and shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{code:02x}")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    dtype = _IDX_DTYPES[code]
    n = 1
    for d in dims:
        n *= d
    offset = 4 + 4 * ndim
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(data) - offset != n * itemsize:
        raise ValueError(f"{path}: expected {n * itemsize} data bytes for shape {dims}, found {len(data) - offset}")
    t = torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8)
    if dtype != torch.uint8:
        # IDX is big-endian
        t = t.view(-1, itemsize).flip(1).contiguous().view(dtype)
    return t.reshape(dims).clone()


def write_idx(path: str, t: torch.Tensor) -> None:
    """Writes a uint8 tensor as an IDX file (gzip-compressed when ``path`` ends in .gz)."""
    t = t.detach().cpu().to(torch.uint8).contiguous()
    header = bytes([0, 0, 0x08, t.dim()]) + struct.pack(">" + "I" * t.dim(), *t.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + t.numpy().tobytes())


def candidate_dirs(name: str, data_dir: str):
    return [os.path.join(data_dir, FOLDER[name], "raw"), data_dir]


def _find(stem: str, dirs) -> Optional[str]:
    for d in dirs:
        for suffix in ("", ".gz"):
            p = os.path.join(d, stem + suffix)
            if os.path.isfile(p):
                return p
    return None


def find_files(name: str, data_dir: str) -> Optional[dict]:
    """Paths of the four IDX files of ``name`` under ``data_dir``, or None if any is missing.
    All four are taken from the same folder."""
    for d in candidate_dirs(name, data_dir):
        paths = {}
        for split, stems in FILES.items():
            for stem in stems:
                p = _find(stem, [d])
                if p is None:
                    break
                paths[stem] = p
        if len(paths) == 4:
            return paths
    return None


def _load_split(paths: dict, split: str) -> Split:
    img_stem, lbl_stem = FILES[split]
    images = read_idx(paths[img_stem])
    labels = read_idx(paths[lbl_stem])
    if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{paths[img_stem]} / {paths[lbl_stem]}: shapes {tuple(images.shape)} and "
            f"{tuple(labels.shape)} are not [N, H, W] images with [N] labels"
        )
    return Split(images.to(torch.uint8), labels.to(torch.int64))


def load_idx_dataset(name: str, data_dir: str) -> Optional[Dataset]:
    paths = find_files(name, data_dir)
    if paths is None:
        return None
    return Dataset(
        name, _load_split(paths, "train"), _load_split(paths, "test"), os.path.dirname(paths[FILES["train"][0]])
    )


# ---------------------------------------------------------------------------------------------
# Download (torchvision) -- a module-level function so tests can replace it
# ---------------------------------------------------------------------------------------------
def download(name: str, data_dir: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Downloads ``name`` into ``data_dir/<Folder>/raw`` with torchvision. Raises on failure."""
    if os.environ.get("SNN_CUDA_NO_DOWNLOAD", "") not in ("", "0"):
        raise OSError("downloads disabled by SNN_CUDA_NO_DOWNLOAD")
    try:
        import torchvision.datasets as tvd
    except Exception as e:  # pragma: no cover - torchvision is optional
        raise OSError(f"torchvision is not importable ({e})") from e
    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST}[name]
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        # torchvision prints its own progress / per-mirror failures; it raises once all fail.
        cls(root=data_dir, train=True, download=True)
        cls(root=data_dir, train=False, download=True)
    finally:
        socket.setdefaulttimeout(old)


def missing_message(name: str, data_dir: str, why: str = "") -> str:
    names = [stem + "[.gz]" for split in ("train", "test") for stem in FILES[split]]
    where = candidate_dirs(name, data_dir)
    msg = [
        f"{PRETTY[name]} is not in --data-dir {data_dir!r} and could not be downloaded"
        + (f" ({why})" if why else "")
        + ".",
        "Put these four IDX files (gzip-compressed or not)",
        *[f"    {n}" for n in names],
        "into one of",
        *[f"    {d}" for d in where],
        "or run where torchvision can download them, or use another dataset:",
    ]
    if name == "mnist":
        msg.append("    --dataset fashion-mnist --data-dir <folder holding FashionMNIST/raw>   (same shape, real data)")
    else:
        msg.append("    --dataset mnist --data-dir <folder holding MNIST/raw>")
    msg.append("    --dataset synthetic        (random data of the same shape: speed and memory only)")
    return "\n".join(msg)


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------
def synthetic(n_train: int = 60000, n_test: int = 10000, seed: int = 0) -> Dataset:
    """MNIST-shaped uint8 data: 10 random smooth class templates, per-sample noise and shifts.
    Learnable enough that a loss goes down, but its accuracy means nothing."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(10, 1, 7, 7, generator=g)
    templates = torch.nn.functional.interpolate(coarse, size=(28, 28), mode="bilinear", align_corners=False)[:, 0]
    templates = (templates > 0.55).float()

    def make(n):
        labels = torch.randint(0, 10, (n,), generator=g)
        img = templates[labels] * (0.6 + 0.4 * torch.rand(n, 1, 1, generator=g))
        img = img + 0.25 * torch.rand(n, 28, 28, generator=g) * (torch.rand(n, 28, 28, generator=g) < 0.3)
        img = (img.clamp(0, 1) * 255).round().to(torch.uint8)
        return Split(img, labels)

    return Dataset("synthetic", make(n_train), make(n_test), "generated")


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def load_dataset(
    dataset: str = "auto", data_dir: str = "./data", *, allow_download: bool = True, log=None, seed: int = 0
) -> Dataset:
    """Loads ``dataset`` (see the module docstring) on the CPU. Raises DatasetUnavailable for an
    explicit mnist / fashion-mnist that is neither on disk nor downloadable."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if dataset == "synthetic":
        log(SYNTHETIC_BANNER.replace("NO MNIST DATA: using", "--dataset synthetic:"))
        return synthetic(seed=seed)
    name = "mnist" if dataset == "auto" else dataset
    ds = load_idx_dataset(name, data_dir)
    if ds is not None:
        return ds
    why = "downloads not allowed"
    if allow_download:
        log(f"{PRETTY[name]} not found under {data_dir!r}: trying to download it with torchvision ...")
        try:
            download(name, data_dir)
            ds = load_idx_dataset(name, data_dir)
            if ds is not None:
                ds.source = "download -> " + ds.source
                return ds
            why = "the download left no IDX files"
        except Exception as e:  # offline: URLError, socket.timeout, RuntimeError from torchvision ...
            why = f"download failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    if dataset == "auto":
        log(f"MNIST unavailable ({why}).")
        log(SYNTHETIC_BANNER)
        return synthetic(seed=seed)
    raise DatasetUnavailable(missing_message(name, data_dir, why))


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool,
    generator: Optional[torch.Generator] = None,
    drop_last: bool = False,
    limit: Optional[int] = None,
) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yields (images float32 [B, 1, 28, 28] in [0, 1], labels int64 [B]) on the split's device."""
    n = len(split)
    order = torch.randperm(n, generator=generator).to(split.images.device) if shuffle else None
    nb = n // batch_size if drop_last else -(-n // batch_size)
    if limit:
        nb = min(nb, limit)
    for i in range(nb):
        if order is None:
            idx = slice(i * batch_size, min(n, (i + 1) * batch_size))
            img, lbl = split.images[idx], split.labels[idx]
        else:
            idx = order[i * batch_size : (i + 1) * batch_size]
            img, lbl = split.images.index_select(0, idx), split.labels.index_select(0, idx)
        yield img.unsqueeze(1).to(torch.float32).div_(255.0), lbl


def num_batches(split: Split, batch_size: int, *, drop_last: bool, limit: Optional[int] = None) -> int:
    n = len(split)
    nb = n // batch_size if drop_last else -(-n // batch_size)
    return min(nb, limit) if limit else nb


def load_for_example(dataset: str = "auto", data_dir: str = "./data", log=None) -> Dataset:
    """The examples' choice: ``auto`` = MNIST (on disk, else downloaded), else Fashion-MNIST when
    it is on disk (same shape, real data), else a DatasetUnavailable error. The examples never
    train on synthetic data unless asked (``--dataset synthetic``)."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if dataset != "auto":
        return load_dataset(dataset, data_dir, log=log)
    try:
        return load_dataset("mnist", data_dir, log=log)
    except DatasetUnavailable as e:
        ds = load_idx_dataset("fashion-mnist", data_dir)
        if ds is None:
            raise DatasetUnavailable(str(e) + "\n(Fashion-MNIST was not found there either.)") from None
        log(
            f"MNIST unavailable: using Fashion-MNIST from {ds.source} (same shape; accuracies are lower than "
            "the tutorials' MNIST figures)"
        )
        return ds
