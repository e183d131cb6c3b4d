"""``minires bench gpu`` (or ``python -m minires.bench gpu``): the whole GPU check in one call.

1. The GPU test suite, ``pytest -m gpu tests/test_gpu.py``: every kernel against the NumPy
   reference on random shapes, float64 gradchecks through the GPU kernels, ResNet-20 on the GPU
   against the CPU. Its full log goes to the results folder.
2. conv2d forward and backward (data and weight gradients; the first conv's weight gradient only, as
   in training) on every distinct ResNet-20 layer shape at batch 128, for every GPU
   conv implementation and for PyTorch + cuDNN, and each one's total over ResNet-20's 19 convs.
3. A training step of ResNet-20 and ResNet-56 at batch 128, minires (each conv implementation)
   against PyTorch.

Everything is float32, first in full fp32 math on both sides (the headline: TF32 off in CuPy's
cuBLAS and in PyTorch's cuBLAS/cuDNN), then with TF32 allowed (the hand-written kernels never use
tensor cores; only the cuBLAS GEMMs of ``cupy``/``numba-cuda`` and PyTorch can). It prints one table
and writes it, with the card, versions, date and the test summary, to
``<out>/<date>-<card>.md``. The exit status is 0 only if the GPU tests passed.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from .. import __version__, backend
from ..checks import non_negative_int, positive_int
from . import reference
from .cost import cifar_resnet_convs
from .suite import HEADERS, cifar_resnet_name, conv_rows, ratio_verdict, report_folder, step_rows
from .table import format_table

TESTS = Path(__file__).resolve().parents[2] / "tests" / "test_gpu.py"


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=positive_int, default=128, help="batch size of every measurement (default 128)")
    parser.add_argument("--repeat", type=positive_int, default=20, help="timed runs per measurement; the median is shown (default 20)")
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed runs first (compilation, caches; default 3)")
    parser.add_argument("--models", nargs="+", type=cifar_resnet_name, default=["resnet20", "resnet56"],
                        help="CIFAR ResNets whose training step is timed (default resnet20 resnet56)")
    parser.add_argument("--out", default="results/gpu", help="folder for the results file and the test log (default results/gpu)")
    parser.add_argument("--skip-tests", action="store_true", help="time only; do not run the GPU test suite")


def run(args) -> int:
    if not backend.cuda_available():
        print("minires bench gpu: no usable GPU (CuPy missing or no CUDA device); install the extra with "
              "pip install -e '.[gpu]' on a machine with an NVIDIA GPU", file=sys.stderr)
        return 1
    out = report_folder(args.out)
    stem = f"{datetime.date.today().isoformat()}-{_slug(_card_name())}"
    tests_passed, test_summary = (True, "not run (--skip-tests)") if args.skip_tests else \
        run_gpu_tests(out / f"{stem}-tests.log")
    torch_ref, torch_note = _torch_reference()
    impls = backend.available("conv2d", device="cuda")
    notes, rows = [torch_note], []
    for tf32 in (False, True):
        math = "tf32" if tf32 else "fp32"
        if not set_tf32(tf32, torch_ref):
            notes.append(f"this CuPy could not set its TF32 mode: its {math} rows ran in CuPy's default math, "
                         f"{cupy_default_math()}")
        rows += conv_rows("cuda", impls, cifar_resnet_convs(3, args.batch), args.repeat, args.warmup, torch_ref,
                          math, network="resnet20")
        rows += step_rows("cuda", impls, args.models, args.batch, args.repeat, args.warmup, torch_ref, math)
    set_tf32(False, torch_ref)
    report = "\n".join(_header(args, test_summary, notes) + target_lines(rows)
                       + ["", "```", format_table(HEADERS, rows), "```"])
    print(report)
    path = out / f"{stem}.md"
    path.write_text(report + "\n")
    print(f"\nwritten to {path}")
    return 0 if tests_passed else 1


TARGET = 2.0  # minires / PyTorch, fp32: the best conv over ResNet-20's convs, and a ResNet-20 training step


def target_lines(rows) -> list[str]:
    """The two targets, met or missed and by how much, from the fp32 rows: the best minires conv
    implementation's total over ResNet-20's convs against cuDNN, and its best ResNet-20 step
    against PyTorch."""
    def best(part, case_start):
        measured = [r for r in rows if r[0] == part and r[1].startswith(case_start) and r[2] != "torch"
                    and r[3] == "fp32" and r[7] is not None]
        return min(measured, key=lambda r: r[7], default=None)

    lines = []
    for what, row in [("ResNet-20's convs (forward + backward) against cuDNN", best("conv", "resnet20: all")),
                      ("a ResNet-20 training step against PyTorch", best("step", "resnet20 batch"))]:
        if row is None:
            lines.append(f"- target <= {TARGET:g}x for {what}: cannot tell (no PyTorch reference or no rows)")
        else:
            lines.append(f"- target <= {TARGET:g}x for {what}, fp32: best is {row[2]} at {ratio_verdict(row[7], TARGET)}")
    return lines


def run_gpu_tests(log: Path) -> tuple[bool, str]:
    """Run the ``gpu`` tests in a child pytest; return (passed, summary lines) and keep the log.

    The child writes straight into ``log``, so a run stopped part-way (a hang, a timeout) still
    leaves what the tests printed."""
    if not TESTS.is_file():
        return False, f"{TESTS} not found: run the benchmark from a source checkout"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "--tb=short", "-p", "no:cacheprovider", str(TESTS)]
    with log.open("w") as sink:
        returncode = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, cwd=TESTS.parents[1]).returncode
    output = log.read_text()
    print(output[-8000:])
    lines = output.strip().splitlines()
    summary = [line for line in lines if line.startswith(("FAILED", "ERROR"))] + lines[-1:]
    return returncode == 0, "; ".join(summary) + f" (log: {log.name})"


def set_tf32(enabled: bool, torch_ref) -> bool:
    """Allow or forbid TF32 in float32 GEMMs, in CuPy and (when present) PyTorch. Returns whether
    CuPy took the setting (its switch is internal API: ``set_compute_type``; the public one, the
    ``CUPY_TF32`` environment variable, is read only once)."""
    if torch_ref is not None:
        torch_ref.set_tf32(enabled)
    try:
        from cupy._core import _routines_linalg as linalg
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT)
        return True
    except (ImportError, AttributeError):
        return False


def cupy_default_math() -> str:
    """The float32 GEMM math CuPy runs unless told otherwise: TF32 when ``CUPY_TF32`` is 1 (read once)."""
    value = os.environ.get("CUPY_TF32")
    return f"{'TF32' if value == '1' else 'fp32'} (CUPY_TF32={value or 'unset'})"


def _torch_reference():
    """(the PyTorch reference, or None, and a note for the header)."""
    torch_ref, why_not = reference.load()
    if torch_ref is None:
        return None, why_not
    if not torch_ref.cuda_available():
        return None, f"{torch_ref.versions()} has no CUDA: minires rows only"
    return torch_ref, torch_ref.versions()


def _card_name() -> str:
    name = backend.cupy_or_none().cuda.runtime.getDeviceProperties(0)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _header(args, test_summary: str, notes: list[str]) -> list[str]:
    runtime = backend.cupy_or_none().cuda.runtime
    return [
        f"# minires bench gpu, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"- card: {_card_name()} (CUDA runtime {runtime.runtimeGetVersion()}, driver {runtime.driverGetVersion()})",
        f"- minires {__version__}, cupy {backend.cupy_or_none().__version__}, numba-cuda {_version('numba-cuda')}, "
        f"numba {_version('numba')}, numpy {np.__version__}, Python {sys.version.split()[0]}, "
        + "; ".join(notes),
        f"- command: python -m minires.bench gpu --batch {args.batch} --repeat {args.repeat} "
        f"--warmup {args.warmup} --models {' '.join(args.models)} --out {args.out}" + " --skip-tests" * args.skip_tests,
        f"- GPU tests: {test_summary}",
        "- times: median of the repeats, host wall clock with device synchronisation (launch overhead "
        "included); x torch = minires / PyTorch for the same row and math (lower is better, target <= 2); "
        "GFLOP/s and GB/s from minires.bench.cost (the conv directions a training step runs: all three, but "
        "no backward-data for the first conv; compulsory bytes; step rows: the convs' FLOPs only)",
    ]
