"""Which BLAS NumPy calls, and whether an OpenBLAS override in the environment slows minires down.

minires' CPU conv is im2col + one BLAS GEMM per chunk of images (:mod:`minires.cpu.conv`), so the
BLAS library, the kernels it picked for this processor (OpenBLAS's *core type*, e.g. ``SkylakeX``)
and its thread count set much of a training step's time. :func:`describe` says which, from
threadpoolctl (without it, only the name and version NumPy was built with).

OpenBLAS picks its kernels for the processor it finds; the environment variables ``OPENBLAS_CORETYPE``
(another processor's kernels) and ``OPENBLAS_L2_SIZE`` (another cache size) override that choice,
and a machine that exports them for some other program can make minires slower. OpenBLAS reads them
once, when it loads, so :func:`override_lines` times minires' conv path (ResNet-20's convs, forward
and backward) in fresh processes, alternately with the environment as it is and with the overrides
removed, and says which is faster (``minires bench cpu`` prints it at the top of its report).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
NOISE = 0.05   # a ratio within 5% of 1 is reported as no measurable difference
NAMES = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS", "flexiblas": "FlexiBLAS"}


def loaded_libraries() -> list[dict] | None:
    """threadpoolctl's record of each BLAS library loaded in this process; None without threadpoolctl."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]


def numpy_build_blas() -> str:
    """The BLAS NumPy was built against, name and version (``numpy.show_config``)."""
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info['name']} {info['version']}"
    except Exception:  # noqa: BLE001 - older NumPy: the build record has another shape
        return "unknown"


def describe(libraries: list[dict] | None, build_blas: str) -> str:
    """One line naming each loaded BLAS library: name, version, core type, threads, file."""
    if libraries is None:
        return f"{build_blas} (threadpoolctl is not installed, so its core type and threads are unknown: " \
               "pip install threadpoolctl)"
    if not libraries:
        return f"{build_blas} (threadpoolctl finds no BLAS library loaded)"
    return "; ".join(_describe_library(lib) for lib in libraries)


def _describe_library(lib: dict) -> str:
    threads = lib.get("num_threads")
    parts = [f"{NAMES.get(lib['internal_api'], lib['internal_api'])} {lib.get('version') or '(version unknown)'}",
             f"core type {lib.get('architecture') or 'not reported'}",
             f"{threads} thread{'s' * (threads != 1)}"]
    return ", ".join(parts) + f" ({Path(lib.get('filepath') or '?').name})"


def overrides_in(environ) -> dict:
    """The OpenBLAS overrides set (non-empty) in ``environ``, name -> value."""
    return {name: environ[name] for name in OVERRIDES if environ.get(name)}


# ----------------------------------------------------------------------------- the override check
def override_lines(threads: int, batch: int = 32, repeat: int = 3, pairs: int = 3,
                   environ=os.environ, libraries=None) -> list[str]:
    """Report lines on the OpenBLAS overrides in ``environ``: none set, set but not read (the BLAS
    is not OpenBLAS), or the conv timing with and without them and :func:`verdict` (or why the
    timing failed)."""
    overrides = overrides_in(environ)
    if not overrides:
        return [f"- OpenBLAS overrides: none set ({', '.join(OVERRIDES)} unset): OpenBLAS picks its own kernels"]
    setting = _setting(overrides)
    libraries = loaded_libraries() if libraries is None else libraries
    if libraries is not None and not any(lib["internal_api"] == "openblas" for lib in libraries):
        return [f"- OpenBLAS overrides: {setting} is set, but NumPy's BLAS is not OpenBLAS: it has no effect"]
    without = {name: value for name, value in environ.items() if name not in OVERRIDES}
    runs = {"with": [], "without": []}
    try:
        for _ in range(pairs):          # interleaved, so that a change in the machine's load hits both
            runs["with"].append(time_conv_path(dict(environ), threads, batch, repeat))
            runs["without"].append(time_conv_path(without, threads, batch, repeat))
    except RuntimeError as error:       # the rest of the benchmark is still worth having
        return [f"- OpenBLAS overrides: {setting} is set, but timing with and without it failed: {error}"]
    with_override, own_choice = (_median_run(runs[key]) for key in ("with", "without"))
    case = f"ResNet-20's {with_override['convs']} convs, forward + backward, batch {batch}, {threads} " \
           f"thread{'s' * (threads != 1)}, wall clock, median of {pairs} fresh processes each"
    return [f"- OpenBLAS overrides: {verdict(overrides, with_override, own_choice)} ({case})"]


def verdict(overrides: dict, with_override: dict, own_choice: dict) -> str:
    """Whether the overrides make minires slower or faster than OpenBLAS's own choice, with the
    numbers; each run is ``{"seconds": ..., "core_type": ...}``."""
    ratio = with_override["seconds"] / own_choice["seconds"]
    setting = _setting(overrides)
    numbers = (f"{1e3 * with_override['seconds']:.1f} ms with {setting} (core type {with_override['core_type']}) "
               f"vs {1e3 * own_choice['seconds']:.1f} ms with OpenBLAS's own choice "
               f"(core type {own_choice['core_type']}): {ratio:.2f}x")
    if ratio > 1 + NOISE:
        unset = " ".join(f"-u {name}" for name in overrides)
        return f"WARNING: {setting} makes minires SLOWER than OpenBLAS's own choice, {numbers}; " \
               f"to run without it: env {unset} python -m minires ..."
    if ratio < 1 / (1 + NOISE):
        return f"{setting} makes minires faster than OpenBLAS's own choice, {numbers}"
    return f"{setting} makes no measurable difference (within {NOISE:.0%}), {numbers}"


def _setting(overrides: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in overrides.items())


def _median_run(runs: list[dict]) -> dict:
    return dict(runs[0], seconds=statistics.median(run["seconds"] for run in runs))


def time_conv_path(environ: dict, threads: int, batch: int, repeat: int) -> dict:
    """:func:`conv_path_seconds` in a fresh Python process with environment ``environ`` (so on the
    wall clock, :mod:`minires.bench.timing`'s default, whatever clock this process uses)."""
    package_root = str(Path(__file__).resolve().parents[2])
    environ = dict(environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, environ.get("PYTHONPATH")])))
    code = ("import json; from minires.bench.blas import conv_path_seconds; "
            f"print(json.dumps(conv_path_seconds({threads}, {batch}, {repeat})))")
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the OpenBLAS override check's child process failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def conv_path_seconds(threads: int, batch: int, repeat: int) -> dict:
    """Seconds of ResNet-20's convs (forward + backward, each shape weighted by its count) through
    minires' default CPU conv, with ``threads`` threads, and the core type OpenBLAS runs."""
    from .. import backend
    from .cost import cifar_resnet_convs
    from .cpu import set_threads
    from .measure import time_conv

    set_threads(threads)
    impl = backend.lookup("conv2d", np.zeros(1))[0]
    convs = cifar_resnet_convs(3, batch)
    seconds = sum(conv.count * sum(time_conv(conv, "cpu", repeat, 1, impl)) for conv in convs)
    core_types = [lib.get("architecture") for lib in loaded_libraries() or [] if lib["internal_api"] == "openblas"]
    return {"seconds": seconds, "core_type": core_types[0] if core_types else "unknown",
            "convs": sum(conv.count for conv in convs)}
