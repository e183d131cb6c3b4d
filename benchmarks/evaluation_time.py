"""The default training run's held-out evaluation, timed: minires with batch norm's one evaluation pass,
minires with the reference's two NumPy passes, and PyTorch, taking turns.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/evaluation_time.py --rounds 5

The trainer of ``minires train --model resnet20`` (its defaults: the 2,000 embedded test images in
batches of its test loader, eval mode) runs :meth:`minires.train.Trainer.evaluate`; the same model in
PyTorch (``benchmarks/torch_train.py``: minires' initial weights and BN statistics) runs its
``evaluate``. Each round times the three once each, in turn; the report is every round's seconds and
each one's median. The two minires evaluations must agree to the bit (the same loss and error), and
the script says so or fails.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_train  # noqa: E402

from minires import backend  # noqa: E402
from minires.checks import positive_int  # noqa: E402
from minires.cpu import get_num_threads  # noqa: E402


def seconds(run) -> tuple[float, object]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=positive_int, default=5, help="rounds of the three evaluations")
    for name in ("train-size", "test-size"):
        parser.add_argument(f"--{name}", type=positive_int, help="as in minires train (default: minires train's)")
    args = parser.parse_args(argv)
    sizes = {key: value for key, value in (("train_size", args.train_size), ("test_size", args.test_size)) if value}
    with tempfile.TemporaryDirectory() as out:
        trainer = torch_train.minires_recipe(out, **sizes)
        torch.set_num_threads(get_num_threads())
        model = torch_train.torch_model(trainer)
        runs = {"minires, one pass": trainer.evaluate, "minires, NumPy passes": lambda: two_passes(trainer),
                "PyTorch": lambda: torch_train.evaluate(model, trainer)}
        for run in runs.values():                     # warm-up: kernels compiled or loaded, caches filled
            run()
        times = {name: [] for name in runs}
        results = {}
        for _ in range(args.rounds):
            for name, run in runs.items():
                took, results[name] = seconds(run)
                times[name].append(took)
    if results["minires, one pass"] != results["minires, NumPy passes"]:
        raise SystemExit(f"evaluation_time: the two minires evaluations differ: {results}")
    print(f"resnet20's held-out evaluation ({len(trainer.test_loader.dataset)} images), {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads; the two minires evaluations gave the same loss and error "
          f"{results['minires, one pass']}")
    for name, taken in times.items():
        print(f"  {name:22s} s: {', '.join(f'{t:.2f}' for t in taken)} (median {statistics.median(taken):.2f})")
    return 0


def two_passes(trainer):
    """The evaluation with batch norm's NumPy implementation, which has no one-pass evaluation (the reference's)."""
    with backend.using("batch_norm", "numpy-threads"):
        return trainer.evaluate()


if __name__ == "__main__":
    sys.exit(main())
