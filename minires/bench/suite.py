"""The measurements of ``minires bench``, as rows of one table, on any device.

``conv_rows``: conv2d forward and backward (data + weight) per layer shape, for each implementation
and for PyTorch, plus each implementation's total over the whole network (each shape weighted by
how many layers have it). ``step_rows``: one training step per model. ``x torch`` is minires time
over PyTorch time for the same case and math mode (1.00: as fast as PyTorch; 2.00: twice as slow).
GFLOP/s and GB/s use the counts of :mod:`minires.bench.cost` (compulsory bytes). A measurement
that raises becomes a FAILED row (its traceback goes to stderr), so one broken implementation
cannot cost the rest of the table.
"""
from __future__ import annotations

import argparse
import functools
import traceback
from pathlib import Path

from ..checks import positive_int
from ..models import CIFAR_RESNETS
from . import measure
from .cost import ConvShape, cifar_resnet_convs, training_step_conv_flops


def report_folder(path: str) -> Path:
    """``--out`` of ``bench cpu`` and ``bench gpu``, made now (before minutes of measurements) so that a bad
    path fails at once."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {path}: exists and is not a folder; choose a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    return out


HEADERS = ["part", "case", "impl", "math", "fwd ms", "bwd ms", "total ms", "x torch", "GFLOP/s", "GB/s", "img/s"]


def cifar_resnet_name(text: str) -> str:
    """An argparse type: one of the CIFAR ResNets the bench builds by name (and PyTorch's reference
    builds from its depth, 6n+2)."""
    if text not in CIFAR_RESNETS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CIFAR ResNet; choose from {', '.join(CIFAR_RESNETS)}")
    return text


def add_interleaved_step_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--batch``, ``--threads`` and ``--rounds``: the arguments of an A/B of training steps
    taking turns (:func:`~minires.bench.measure.interleaved_step_medians`)."""
    parser.add_argument("--model", type=cifar_resnet_name, default="resnet20", help="default resnet20")
    parser.add_argument("--batch", type=positive_int, default=32, help="default 32")
    parser.add_argument("--threads", type=positive_int, default=2, help="default 2")
    parser.add_argument("--rounds", type=positive_int, default=12, help="turns each (two steps each; default 12)")


def print_interleaved_steps(args, medians: dict[str, float], ratio: tuple[str, str], numba: str | None = None) -> None:
    """Print an A/B's median step times (:func:`~minires.bench.measure.interleaved_step_medians`, run with
    :func:`add_interleaved_step_arguments`' ``args``) and the ratio ``ratio[0] / ratio[1]`` of two of them;
    ``numba``: Numba's threads, as :func:`minires.bench.cpu.set_threads` reports them."""
    threads = f"{args.threads} thread(s)" + ("" if numba is None else f", Numba {numba}")
    print(f"{args.model} batch {args.batch}, {threads}, wall clock, {2 * args.rounds} steps each, medians:")
    width = max(len(name) for name in medians)
    for name, seconds in medians.items():
        print(f"  {name:{width}s} step {1e3 * seconds:8.1f} ms")
    print(f"  {ratio[0]} / {ratio[1]}: step {medians[ratio[0]] / medians[ratio[1]]:.3f}")


def _ratio(seconds, reference):
    return None if reference is None else seconds / reference


def ratio_verdict(ratio: float, target: float) -> str:
    """``2.17x, missed by 1.08x`` (against a ``target`` of 2) or ``0.96x, met`` (against 1), the target being
    minires / PyTorch at most: judged on the exact ratio, printed with a third decimal where two would hide
    which side of the target it lies (``2.004x, missed by 1.00x`` against 2)."""
    shown = f"{ratio:.3f}x" if round(ratio, 2) == target and ratio != target else f"{ratio:.2f}x"
    return f"{shown}, met" if ratio <= target else f"{shown}, missed by {ratio / target:.2f}x"


def attempt(measurement, *args):
    """``measurement(*args)``, or None (traceback printed) when it raises."""
    try:
        return measurement(*args)
    except Exception:  # noqa: BLE001 - report and go on: the other rows are still worth having
        traceback.print_exc()
        return None


def _failed_row(part, case, impl, math):
    return [part, f"{case}: FAILED (traceback on stderr)", impl, math] + [None] * (len(HEADERS) - 4)


def _conv_row(case, impl, math, fwd, bwd, reference, flops, nbytes):
    total = fwd + bwd
    return ["conv", case, impl, math, 1e3 * fwd, 1e3 * bwd, 1e3 * total, _ratio(total, reference),
            flops / total / 1e9, nbytes / total / 1e9, None]


def conv_rows(device, impls, convs: list[ConvShape], repeat, warmup, torch_ref=None, math="fp32",
              network="network"):
    """One row per (layer shape, implementation), then one total row per implementation (each named
    once however often ``impls`` names it)."""
    measurements = ([("torch", torch_ref.time_conv)] if torch_ref is not None else []) + \
        [(impl, functools.partial(measure.time_conv, impl=impl)) for impl in dict.fromkeys(impls)]
    rows, timings = [], {}  # timings: impl -> {conv name: (fwd, bwd)} for the shapes that ran
    for impl, time_conv in measurements:
        timings[impl] = {}
        for c in convs:
            measured = attempt(time_conv, c, device, repeat, warmup)
            if measured is None:
                rows.append(_failed_row("conv", c.name, impl, math))
                continue
            timings[impl][c.name] = measured
            reference = sum(timings["torch"][c.name]) if c.name in timings.get("torch", {}) else None
            rows.append(_conv_row(c.name, impl, math, *measured, reference, c.flops(), c.bytes()))
    totals = {impl: [sum(c.count * times[c.name][i] for c in convs) for i in (0, 1)]
              for impl, times in timings.items() if len(times) == len(convs)}
    torch_total = sum(totals["torch"]) if "torch" in totals else None
    case = f"{network}: all {sum(c.count for c in convs)} convs"
    rows += [_conv_row(case, impl, math, fwd, bwd, torch_total, sum(c.count * c.flops() for c in convs),
                       sum(c.count * c.bytes() for c in convs)) for impl, (fwd, bwd) in totals.items()]
    return rows


def step_rows(device, impls, model_names, batch, repeat, warmup, torch_ref=None, math="fp32"):
    """One row per (model, conv implementation): a full training step at ``batch``."""
    rows = []
    for name in dict.fromkeys(model_names):
        n = (int(name.removeprefix("resnet")) - 2) // 6
        flops = training_step_conv_flops(cifar_resnet_convs(n, batch))
        results = {}
        if torch_ref is not None:
            results["torch"] = attempt(torch_ref.time_training_step, n, batch, device, repeat, warmup)
        for impl in dict.fromkeys(impls):
            results[impl] = attempt(measure.time_training_step, name, batch, device, repeat, warmup, impl)
        case = f"{name} batch {batch}"
        for impl, seconds in results.items():
            if seconds is None:
                rows.append(_failed_row("step", case, impl, math))
                continue
            rows.append(["step", case, impl, math, None, None, 1e3 * seconds,
                         _ratio(seconds, results.get("torch")), flops / seconds / 1e9, None, batch / seconds])
    return rows
