"""Find the PyTorch reference of ``minires bench`` without the library importing PyTorch.

The reference (``benchmarks/torch_reference.py`` in the source checkout) is loaded from its file,
and only when PyTorch is installed; the benchmark then prints minires and PyTorch side by side.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

REFERENCE_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "torch_reference.py"


def load():
    """``(module, None)``, or ``(None, why not)`` when PyTorch or the reference file is missing."""
    if importlib.util.find_spec("torch") is None:
        return None, "PyTorch not installed: minires rows only"
    if not REFERENCE_FILE.exists():
        return None, f"no PyTorch reference at {REFERENCE_FILE} (it ships with the source checkout): minires rows only"
    spec = importlib.util.spec_from_file_location("minires_torch_reference", REFERENCE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, None
