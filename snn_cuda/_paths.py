"""Machine paths out of written results: benchmark JSON/Markdown and check reports are committed or
shared, so an absolute path of the machine that produced them (the checkout, the virtual
environment, the home directory, a temporary folder) is replaced by a placeholder before writing.

    scrub_paths(obj, root=None) -> obj with every string scrubbed (dicts, lists, tuples recursed)

Placeholders: ``<repo>`` (the source checkout: ``root``, else the folder holding this package's
parent when it has a setup.py), ``<venv>`` (sys.prefix when it is a virtual environment, and the
base interpreter's prefix), ``<site-packages>`` (where this package is installed when not from a
checkout), ``~`` (the home directory) and ``<tmp>`` (the temporary directory).
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from typing import Any, List, Optional, Tuple

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _checkout_root() -> Optional[str]:
    parent = os.path.dirname(_PKG_DIR)
    return parent if os.path.exists(os.path.join(parent, "setup.py")) else None


def replacements(root: Optional[str] = None) -> List[Tuple[str, str]]:
    """(absolute path, placeholder) pairs, longest path first, so that a venv inside the checkout
    becomes <venv> and not <repo>/.venv."""
    pairs = []

    def add(path, placeholder):
        if not path:
            return
        for p in {os.path.abspath(path), os.path.realpath(path)}:
            if len(p) > 1 and p != os.sep:  # never rewrite "/" itself
                pairs.append((p.rstrip(os.sep), placeholder))

    add(root or _checkout_root(), "<repo>")
    add(sysconfig.get_paths().get("purelib"), "<site-packages>")
    add(sys.prefix, "<venv>")
    if getattr(sys, "base_prefix", sys.prefix) not in ("/usr", "/usr/local"):
        add(sys.base_prefix, "<python>")
    home = os.path.expanduser("~")
    if home and home not in ("/", "~"):
        add(home, "~")
    add(tempfile.gettempdir(), "<tmp>")
    add("/tmp", "<tmp>")
    seen, out = set(), []
    for p, ph in sorted(pairs, key=lambda x: -len(x[0])):
        if p not in seen:
            seen.add(p)
            out.append((p, ph))
    return out


def scrub_text(s: str, pairs: Optional[List[Tuple[str, str]]] = None) -> str:
    """``s`` with every occurrence of a machine path prefix replaced by its placeholder. A prefix
    matches only when followed by a path separator, a quote, whitespace, punctuation or the end,
    so that ``/tmpfoo`` is left alone."""
    if pairs is None:
        pairs = replacements()
    for path, ph in pairs:
        if path not in s:
            continue
        parts = s.split(path)
        out = [parts[0]]
        for nxt in parts[1:]:
            ok = nxt == "" or nxt[0] in "/\\\"' \t\n,;:.)]}`"
            out.append((ph if ok else path) + nxt)
        s = "".join(out)
    return s


def scrub_paths(obj: Any, root: Optional[str] = None, _pairs=None) -> Any:
    """A copy of ``obj`` (JSON-like: dict, list, tuple, str, numbers) with machine paths replaced."""
    pairs = _pairs if _pairs is not None else replacements(root)
    if isinstance(obj, str):
        return scrub_text(obj, pairs)
    if isinstance(obj, dict):
        return {
            scrub_paths(k, _pairs=pairs) if isinstance(k, str) else k: scrub_paths(v, _pairs=pairs)
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return type(obj)(scrub_paths(v, _pairs=pairs) for v in obj)
    return obj
