"""``minires bench cpu`` (or ``python -m minires.bench cpu``): minires against PyTorch on the same cores.

1. conv2d forward and backward (the gradients training asks for: data and weight, only the weight's
   for the first conv) on every distinct ResNet-20 layer shape, for each CPU conv
   implementation but the slow NumPy reference (``--impls`` names the ones to time instead, ``numpy``
   among them) and for PyTorch, and each one's total over ResNet-20's 19 convs;
2. a training step (forward, cross-entropy, backward, SGD with momentum) of each ``--models``;
3. the peak memory of a training step of the first ``--models``, minires and PyTorch measured the same way;
4. scaling: time per step against batch size (``--batches``) and depth (``--depths``), which should
   be linear in both; a plot of it.

float32, NCHW-indexed, the same thread count on both sides (``--threads``, default: every core):
PyTorch's intra-op threads, minires' CPU threads (each calling single-threaded BLAS) and Numba's.
Each framework keeps activations in its own memory layout, as in its training step: PyTorch's
contiguous NCHW, minires' channels-last (the CPU conv's output; see :mod:`minires.cpu.conv`).
Times are the median of ``--repeat`` runs after ``--warmup`` (see ``--clock``). The table, the machine
(with a warning when other jobs' load left the benchmark's threads short of cores: :func:`load_warning`),
versions, thread counts and the BLAS library (its core type and threads, and whether an OpenBLAS
override in the environment slows minires down: :mod:`minires.bench.blas`) go to
``<out>/<date>-<cpu>-<threads>-threads.md`` with the plot beside it (``.png``).
``--tiny`` runs everything on toy sizes in seconds (the test suite uses it; its numbers mean nothing,
and its report says so, in a file of its own: ``...-tiny.md``).

**Clock**: ``--clock wall`` (default) is what a user waits; ``--clock cpu`` times the process's
CPU time instead, which on a machine shared with other jobs is the work done without the time
spent waiting for a core (with one thread; with more it also counts threads that spin).

**Peak memory**, the same way for both frameworks, each in a fresh process (so nothing freed by
earlier measurements hides in the allocator): glibc is told to give every freed block of 128 KiB or
more back to the system (``mallopt``), two warm-up steps run (compilation, optimizer state), the
kernel's resident-set high-water mark is reset (``/proc/self/clear_refs``), one step runs, and
the report is the high-water mark minus the resident set before that step: the memory a step
needs on top of the model and its optimizer state (activations kept for backward, gradients,
temporaries). Linux only; elsewhere the row says FAILED, and stderr why.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__, backend
from ..checks import non_negative_int, positive_int
from ..cli import cpu_conv_impl
from ..cpu import allocator
from ..models import CIFAR_RESNETS
from . import blas, reference
from .cost import cifar_resnet_convs
from .gpu import _slug, _version
from .measure import synchronizer, training_step
from .suite import HEADERS, attempt, cifar_resnet_name, conv_rows, ratio_verdict, report_folder, step_rows
from .table import format_table
from .timing import median_seconds, use_clock

TINY = dict(batch=4, repeat=1, warmup=1, threads=1, models=["resnet20"], batches=[2, 4], depths=[20, 32],
            scaling_repeat=1, override_batch=2, override_pairs=1)
TARGET = 1.0  # issue #20: a training step and its peak memory, minires / PyTorch on the same threads
SCALING_HEADERS = ["scaling", "case", "minires ms", "torch ms", "x torch", "minires ms per unit", "unit"]
MEMORY_HEADERS = ["memory", "case", "minires MiB", "torch MiB", "x torch"]


class _Given(argparse.Action):
    """Store the value, and note in ``given`` that the option was given: ``--tiny`` refuses the options it would
    replace, even when given at their default value."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = (*getattr(namespace, "given", ()), self.dest)


def add_arguments(parser) -> None:
    parser.add_argument("--batch", action=_Given, type=positive_int, default=128, help="batch size of the conv and step rows (default 128)")
    parser.add_argument("--repeat", action=_Given, type=positive_int, default=10, help="timed runs per measurement; the median is shown (default 10)")
    parser.add_argument("--warmup", action=_Given, type=non_negative_int, default=2, help="untimed runs first (Numba compilation, caches; default 2)")
    parser.add_argument("--models", action=_Given, nargs="+", type=cifar_resnet_name, default=["resnet20", "resnet56"],
                        help=f"CIFAR ResNets to time ({', '.join(CIFAR_RESNETS)}; default resnet20 resnet56)")
    parser.add_argument("--impls", nargs="+", type=cpu_conv_impl,
                        help="conv2d implementations (default: the fast CPU ones)")
    parser.add_argument("--threads", action=_Given, type=positive_int, default=os.cpu_count(),
                        help=f"threads for every library (default: every core, here {os.cpu_count()})")
    parser.add_argument("--batches", action=_Given, nargs="+", type=positive_int, default=[16, 32, 64, 128, 256],
                        help="batch sizes of the scaling rows (ResNet-20; default 16 32 64 128 256)")
    parser.add_argument("--depths", action=_Given, nargs="+", type=cifar_resnet_depth, default=[20, 56, 110],
                        help="ResNet depths of the scaling rows (at --batch; default 20 56 110)")
    parser.add_argument("--scaling-repeat", action=_Given, type=positive_int, default=3, help="timed runs per scaling point (default 3)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall clock (the default), or the process's CPU time (steadier on a shared machine)")
    parser.add_argument("--override-batch", action=_Given, type=positive_int, default=32,
                        help=f"batch of the conv timing with and without {' / '.join(blas.OVERRIDES)}, "
                             "when they are set (default 32)")
    parser.add_argument("--override-pairs", action=_Given, type=positive_int, default=3,
                        help="fresh processes with and without the OpenBLAS overrides, alternating (default 3)")
    parser.add_argument("--out", default="results/cpu", help="folder for the report and the plot (default results/cpu)")
    parser.add_argument("--tiny", action="store_true",
                        help=f"toy sizes, one run each: checks the machinery (sets {', '.join(_flags(TINY))} itself)")
    parser.set_defaults(given=())


def run(args) -> int:
    out = report_folder(args.out)
    if args.tiny:
        given = [name for name in TINY if name in getattr(args, "given", ())]
        if given:
            raise ValueError(f"--tiny sets {', '.join(_flags(given))} itself; drop {'them' if len(given) > 1 else 'it'} "
                             "or drop --tiny")
        vars(args).update(TINY)
    load_before = _load_average()
    threads = set_threads(args.threads)
    use_clock(time.process_time if args.clock == "cpu" else time.perf_counter)
    blas_lines = [f"- BLAS: {blas.describe(blas.loaded_libraries(), blas.numpy_build_blas())}"]
    blas_lines += blas.override_lines(args.threads, args.override_batch, args.repeat, args.override_pairs)
    print("\n".join(blas_lines), flush=True)
    torch_ref, torch_note = _torch_reference(args.threads)
    impls = args.impls or fast_cpu_impls()
    rows = conv_rows("cpu", impls, cifar_resnet_convs(3, args.batch), args.repeat, args.warmup, torch_ref,
                     network="resnet20")
    rows += step_rows("cpu", impls, args.models, args.batch, args.repeat, args.warmup, torch_ref)
    scaling = scaling_rows(args, torch_ref)
    memory = memory_rows(args.models[0], args.batch, args.threads, torch_ref is not None)
    stem = out / (f"{datetime.date.today().isoformat()}-{_slug(cpu_name())}-{args.threads}-thread{'s' * (args.threads > 1)}"
                  + "-tiny" * args.tiny)
    plot_scaling(scaling, stem.with_suffix(".png"))
    report = "\n".join(_header(args, threads, torch_note, load_before) + blas_lines
                       + target_lines(rows, memory, backend.lookup("conv2d", np.zeros(1))[0]) + [
        "", "```", format_table(HEADERS, rows), "", format_table(MEMORY_HEADERS, memory), "",
        format_table(SCALING_HEADERS, scaling), "```", "", f"![scaling]({stem.with_suffix('.png').name})"])
    print(report)
    stem.with_suffix(".md").write_text(report + "\n")
    print(f"\nwritten to {stem.with_suffix('.md')} and {stem.with_suffix('.png')}")
    return 0


def target_lines(rows, memory, default_impl: str) -> list[str]:
    """Issue #20's target, met or missed, from this report's rows: each model's training step with the default conv
    implementation (what a user runs), and the first model's peak step memory, against PyTorch."""
    head = f"- target <= {TARGET:g}x (issue #20) for"
    steps = [row for row in rows if row[0] == "step" and row[2] == default_impl]
    lines = [f"{head} a {row[1]} step ({row[2]}): {_judged(row[7])}" for row in steps]
    if not steps:
        lines.append(f"{head} a training step: cannot tell (the default conv, {default_impl}, was not among --impls)")
    return lines + [f"{head} the peak memory of a {row[1]} step: {_judged(row[4])}" for row in memory]


def _judged(ratio) -> str:
    return "cannot tell (no PyTorch reference, or a side FAILED)" if ratio is None else ratio_verdict(ratio, TARGET)


def _flags(names) -> list[str]:
    """Option names as typed: ``scaling_repeat`` -> ``--scaling-repeat``."""
    return [f"--{name.replace('_', '-')}" for name in names]


def cifar_resnet_depth(text: str) -> int:
    """An argparse type: the depth of one of the CIFAR ResNets the bench builds by name."""
    depths = [name.removeprefix("resnet") for name in CIFAR_RESNETS]
    if text not in depths:
        raise argparse.ArgumentTypeError(f"{text!r} is not the depth of a CIFAR ResNet; choose from {', '.join(depths)}")
    return int(text)


def fast_cpu_impls() -> list[str]:
    """The conv2d implementations that run on the CPU, the default first, without the slow reference."""
    default = backend.lookup("conv2d", np.zeros(1))[0]
    names = [name for name in backend.available("conv2d") if name != "numpy" and _runs_on_cpu(name)]
    return sorted(names, key=lambda name: name != default)


def _runs_on_cpu(name: str) -> bool:
    try:
        backend.lookup("conv2d", np.zeros(1), name)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- threads, machine
def set_threads(threads: int) -> dict:
    """Give minires' CPU paths and Numba ``threads`` threads; return what each library now uses.
    The conv runs the chunks of each call on minires' threads, each calling a single-threaded GEMM
    (:func:`minires.cpu.set_num_threads`), so BLAS gets one thread."""
    import threadpoolctl
    from ..cpu import threads as cpu_threads
    cpu_threads.set_num_threads(threads)
    threadpoolctl.threadpool_limits(1, user_api="blas")
    blas = ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in threadpoolctl.threadpool_info()
                     if p["user_api"] == "blas")
    used = {"minires conv": cpu_threads.get_num_threads(), "BLAS": f"{blas} (in each conv thread)"}
    try:
        import numba
    except ImportError:
        used["Numba"] = "not installed"
    else:
        from ..cpu.numba_layer import threading_layer
        layer = threading_layer()          # before set_num_threads starts Numba's threads
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        used["Numba"] = f"{numba.get_num_threads()} ({layer} layer)"
    return used


def reference_blocks(model_name: str) -> int:
    """``n`` of the PyTorch reference's 6n+2-layer CIFAR ResNet that is ``model_name`` (``resnet20``: 3)."""
    return (int(model_name.removeprefix("resnet")) - 2) // 6


def warmed_up_steps(model_name: str, batch: int, threads: int):
    """``(minires' training step, PyTorch's)`` of the CIFAR ResNet ``model_name`` at ``batch``, each
    framework on ``threads`` threads (:func:`~minires.bench.measure.training_step` and the reference's,
    one recipe), after two steps of each in turn; SystemExit saying why where PyTorch cannot be loaded."""
    torch_ref, why_not = reference.load()
    if torch_ref is None:
        raise SystemExit(why_not)
    set_threads(threads)
    torch_ref.use_threads(threads)
    ours = training_step(model_name, batch, "cpu")
    theirs = torch_ref.training_step(reference_blocks(model_name), batch, "cpu")
    for step in (ours, theirs, ours, theirs):
        step()
    return ours, theirs


def _torch_reference(threads: int):
    """(the PyTorch reference with ``threads`` intra-op threads, or None, and a note)."""
    torch_ref, why_not = reference.load()
    if torch_ref is None:
        return None, why_not
    used = torch_ref.use_threads(threads)
    return torch_ref, f"{torch_ref.versions()} ({used} thread{'s' * (used != 1)})"


def cpu_name() -> str:
    """The processor's model name (``lscpu``'s "Model name"), from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> tuple | None:
    """The 1, 5 and 15-minute load averages, or None where the system has none."""
    try:
        return os.getloadavg()
    except OSError:
        return None


def _format_load(load) -> str:
    return "unknown" if load is None else " ".join(f"{v:.1f}" for v in load)


def load_warning(load_before, threads: int, cores: int) -> list[str]:
    """A warning when other jobs' load (the 1-minute load average before the run) exceeds the cores
    the benchmark leaves free by more than half a core: jobs still running then took cores from its
    threads (the average also remembers jobs that ended within the last minute or so)."""
    if load_before is None:
        return ["- WARNING: no load average on this system: whether other jobs shared the cores is unknown"]
    free = max(cores - threads, 0)
    if load_before[0] <= free + 0.5:
        return []
    return [f"- WARNING: a busy machine: the 1-minute load average before the run was {load_before[0]:.1f} on {cores} "
            f"cores, of which the benchmark's {threads} thread{'s' * (threads != 1)} leave {free} "
            "free: if those jobs were still running (not just ended), they shared its cores, and wall-clock times and "
            "their ratios are noisy (--clock cpu is steadier with one thread)"]


def threads_warning(threads: int, cores: int) -> list[str]:
    """A warning when ``--threads`` asks for more threads than the machine has cores."""
    if threads <= cores:
        return []
    return [f"- WARNING: {threads} threads on {cores} cores: each library's threads take turns on the cores, so "
            "the times measure that contention, not what the machine does with a thread per core"]


def clock_lines(clock: str, threads: int) -> list[str]:
    """What ``--clock cpu`` times, and a warning when several threads make it more than the work of one."""
    if clock == "wall":
        return []
    line = "clock: the process's CPU time (summed over its threads), not the wall clock a user waits"
    if threads == 1:
        return [f"- {line}"]
    return [f"- WARNING: {line}: with {threads} threads it adds up every thread that works or spins (PyTorch's "
            "OpenMP threads spin while they wait), so ms, x torch, GFLOP/s and img/s are not wall-clock figures"]


def _header(args, threads, torch_note, load_before) -> list[str]:
    command = " ".join(["python -m minires.bench cpu"] + sys.argv[sys.argv.index("cpu") + 1:]) \
        if "cpu" in sys.argv else "python -m minires.bench cpu"
    return [
        f"# minires bench cpu, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores; load average (1/5/15 min) {_format_load(load_before)} before, "
        f"{_format_load(_load_average())} after",
        *load_warning(load_before, args.threads, os.cpu_count()),
        *threads_warning(args.threads, os.cpu_count()),
        *["- --tiny: toy sizes, one run each: these numbers check the machinery and mean nothing"] * args.tiny,
        *clock_lines(args.clock, args.threads),
        f"- threads: minires conv {threads['minires conv']}, BLAS {threads['BLAS']}, Numba {threads['Numba']}, {torch_note}",
        f"- minires {__version__}, Python {platform.python_version()}, NumPy {np.__version__} (built with {blas.numpy_build_blas()}), "
        f"Numba {_version('numba')}; conv2d default: {backend.lookup('conv2d', np.zeros(1))[0]}",
        f"- command: {command} (clock: {args.clock})",
        "- float32, NCHW-indexed; activations in each framework's own memory layout (minires: channels last, "
        "PyTorch: contiguous NCHW). Conv backward: data and weight gradients, the first conv's weight gradient only, as in "
        f"training. Conv rows: ms per call on a batch of {args.batch} images; step rows: ms per training step. "
        "Times: median of the repeats after warm-up. x torch = minires / PyTorch "
        "(lower is better; the target lines judge issue #20's <= 1.0). GFLOP/s from minires.bench.cost (conv FLOPs only). Memory: extra "
        "resident memory of one training step (see minires/bench/cpu.py).",
    ]


# ----------------------------------------------------------------------------- memory
def memory_rows(model_name: str, batch: int, threads: int, with_torch: bool) -> list[list]:
    """Peak extra memory of one training step of ``model_name``, minires and PyTorch (fresh processes)."""
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1, maxtasksperchild=1) as pool:
        ours = attempt(pool.apply, _step_memory_in_child, ("minires", model_name, batch, threads))
        theirs = attempt(pool.apply, _step_memory_in_child, ("torch", model_name, batch, threads)) if with_torch else None
    ratio = ours / theirs if ours and theirs else None
    mb = [None if v is None else v / 2 ** 20 for v in (ours, theirs)]
    return [["step", _case(f"{model_name} batch {batch}", ours, theirs, with_torch), *mb, ratio]]


def _case(case: str, ours, theirs, with_torch: bool) -> str:
    """``case``, naming the side(s) whose measurement raised (:func:`~minires.bench.suite.attempt`: None)."""
    failed = [name for name, value, asked in (("minires", ours, True), ("torch", theirs, with_torch))
              if asked and value is None]
    return f"{case}: {' and '.join(failed)} FAILED (traceback on stderr)" if failed else case


def _step_memory_in_child(framework: str, model_name: str, batch: int, threads: int) -> int:
    """:func:`peak_step_bytes` of one framework's training step, run in a fresh (spawned) process."""
    _return_freed_memory_to_the_system()
    set_threads(threads)
    if framework == "minires":
        step = training_step(model_name, batch, "cpu")
    else:
        step = _torch_reference(threads)[0].training_step(reference_blocks(model_name), batch, "cpu")
    peak = peak_step_bytes(step)
    if peak is None:
        raise OSError("the peak memory of a step needs Linux's /proc/self/clear_refs, which this system lacks")
    return peak


def peak_step_bytes(step) -> int | None:
    """How far one call of ``step`` raises the resident set above its level before the call (Linux)."""
    for _ in range(2):
        step()
    gc.collect()
    try:
        before = _status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    except (OSError, ValueError):
        return None
    step()
    return 1024 * (_status_kib("VmHWM") - before)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"/proc/self/status has no {field}")


def _return_freed_memory_to_the_system() -> None:
    """glibc: serve blocks of 128 KiB or more with mmap and trim the heap above 128 KiB, so freed
    arrays leave the resident set at once (undoing :mod:`minires.cpu.allocator` in this process)."""
    allocator.set_thresholds(mmap=128 * 1024, trim=128 * 1024)


# ----------------------------------------------------------------------------- scaling
def scaling_rows(args, torch_ref) -> list[list]:
    """Time per ResNet step against batch size (ResNet-20) and against depth (at ``args.batch``)."""
    cases = [("batch", f"resnet20 batch {b}", "resnet20", b, b, "image") for b in args.batches]
    cases += [("depth", f"resnet{d} batch {args.batch}", f"resnet{d}", args.batch, d, "layer") for d in args.depths]
    rows = []
    for kind, case, model, batch, units, unit in cases:
        ours = attempt(_median, training_step, model, batch, args)
        theirs = None if torch_ref is None else \
            attempt(_median, torch_ref.training_step, (int(model.removeprefix("resnet")) - 2) // 6, batch, args)
        ms = [None if v is None else 1e3 * v for v in (ours, theirs)]
        rows.append([kind, _case(case, ours, theirs, torch_ref is not None), *ms,
                     ours / theirs if ours and theirs else None, None if ours is None else 1e3 * ours / units, unit])
    return rows


def _median(make_step, model, batch, args) -> float:
    """Median seconds of the step ``make_step(model, batch, "cpu")`` returns."""
    return median_seconds(make_step(model, batch, "cpu"), synchronizer("cpu"), args.scaling_repeat, args.warmup)


def plot_scaling(rows, path: Path) -> None:
    """Two panels, ms per step against batch size and against depth, minires and PyTorch, with the
    straight line fitted to minires (linear scaling stays on it); FAILED points are left out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind, label in zip(axes, ("batch", "depth"), ("batch size (ResNet-20)", "depth (ResNet-6n+2)")):
        chosen = [r for r in rows if r[0] == kind and r[2] is not None]
        units = np.array([r[2] / r[5] for r in chosen])        # batch size or depth
        ours = np.array([r[2] for r in chosen])
        ax.plot(units, ours, "o-", label="minires")
        if all(r[3] is not None for r in chosen):
            ax.plot(units, [r[3] for r in chosen], "s-", label="PyTorch")
        if len(set(units)) > 1:
            slope, intercept = np.polyfit(units, ours, 1)
            ax.plot([0, units.max()], [intercept, intercept + slope * units.max()], "k:", lw=1,
                    label="linear fit (minires)")
        ax.set(xlabel=label, ylabel="ms per training step", xlim=(0, None), ylim=(0, None))
        ax.legend()
    fig.suptitle(f"minires vs PyTorch, CPU training step ({cpu_name()})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
