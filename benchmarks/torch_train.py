"""PyTorch trains the recipe of ``minires train --model resnet20`` (the README's default run): its
wall time and final held-out accuracy, to put beside minires' on the same machine and threads.

    python benchmarks/torch_train.py                    # the README's default run, in PyTorch
    python benchmarks/torch_train.py --threads 1 --epochs 2

The recipe is not restated here, it is taken from minires: a :class:`minires.train.Trainer` is built
with the same settings as ``minires train`` (its defaults unless given) and supplies

* the data: its loaders, so PyTorch gets the very batches minires trains on (the embedded synthetic
  images, per-pixel mean subtracted; 4-pixel pad + random crop and random flip, shuffled and
  augmented from the same seed), as NumPy arrays turned into tensors without a copy;
* the initial weights: the PyTorch ResNet (``benchmarks/torch_reference.py``, the paper's option A
  shortcuts, layer for layer minires' model) starts from minires' initialised parameters and BN
  statistics;
* the optimisation: SGD with its learning rate, momentum and weight decay, the rate divided by 10 at
  its milestones (in iterations, ``torch.optim.lr_scheduler.MultiStepLR``), its number of iterations;
* the evaluation: the held-out loader after every epoch, in eval mode (BN running statistics).

Both frameworks load data with minires' NumPy loader, so the difference in time is the model's
forward, backward and update (and the evaluation's forward). The wall time printed covers the
training epochs and the evaluations (not building the data and the model); time the whole command
to compare it with ``time minires train``. Threads: ``--threads`` (default: what minires uses,
``OMP_NUM_THREADS`` or every core).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_reference  # noqa: E402

from minires import cpu  # noqa: E402
from minires.train import Config, Trainer  # noqa: E402


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def minires_recipe(out: str, **settings) -> Trainer:
    """minires' trainer for ``minires train`` with ``settings`` (its data, weights and schedule), unstarted."""
    cfg = Config(out=out, progress=False, **settings)
    if not re.fullmatch(r"resnet\d+", cfg.model) or cfg.width is not None:
        raise ValueError(f"torch_train: {cfg.model!r}: only the CIFAR ResNets of the paper's widths "
                         "(resnet20, resnet32, ...) have a PyTorch twin in benchmarks/torch_reference.py")
    if cfg.warmup:
        raise ValueError("torch_train: warm-up is not part of the default recipe; leave --warmup out")
    return Trainer(cfg)


def torch_model(trainer: Trainer) -> torch.nn.Module:
    """The PyTorch CIFAR ResNet of the trainer's depth, holding a copy of minires' initial weights and
    BN statistics (the two state dicts list the same tensors in the same order)."""
    depth = int(trainer.cfg.model.removeprefix("resnet"))
    model = torch_reference.cifar_resnet((depth - 2) // 6, num_classes=trainer.model.fc.weight.shape[0])
    ours, theirs = trainer.model.state_dict(), model.state_dict()
    if len(ours) != len(theirs):
        raise ValueError(f"torch_train: minires' {trainer.cfg.model} has {len(ours)} state entries, the PyTorch "
                         f"model {len(theirs)}; only the CIFAR ResNets (resnet20, resnet32, ...) are mirrored")
    copied = {}
    for (name, value), (torch_name, torch_value) in zip(ours.items(), theirs.items()):
        if tuple(value.shape) != tuple(torch_value.shape):
            raise ValueError(f"torch_train: {name} {value.shape} does not fit {torch_name} {tuple(torch_value.shape)}")
        copied[torch_name] = torch.as_tensor(value).to(torch_value.dtype)
    model.load_state_dict(copied)
    return model.to(DTYPES[trainer.cfg.dtype])


def torch_optimizer(model: torch.nn.Module, trainer: Trainer):
    """PyTorch's SGD and MultiStepLR with the trainer's settings and milestones (in iterations)."""
    cfg = trainer.cfg
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, trainer.scheduler.milestones,
                                                     gamma=trainer.scheduler.gamma)
    return optimizer, scheduler


def train(model, trainer: Trainer, report=print, progress: bool = False) -> dict:
    """The trainer's schedule in PyTorch: its batches, its iterations, an evaluation after each epoch.

    Each epoch takes one ``iter()`` of the trainer's loader, as :meth:`Trainer.train_epoch` does, so
    run epoch k draws the loader's epoch k - 1: the same batches, in the same order, with the same
    augmentation.
    """
    optimizer, scheduler = torch_optimizer(model, trainer)
    iteration, start, last = 0, time.perf_counter(), {}
    for epoch in range(1, trainer.epochs + 1):
        model.train()
        wrong = seen = 0
        for x, y in tqdm(iter(trainer.train_loader), total=len(trainer.train_loader),
                         desc=f"epoch {epoch}/{trainer.epochs}", leave=False, disable=not progress, file=sys.stderr):
            images, labels = _tensor(x, trainer), torch.from_numpy(y)
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            iteration += 1
            wrong, seen = wrong + int((logits.argmax(1) != labels).sum()), seen + len(y)
            if iteration >= trainer.total_iterations:
                break
        test_loss, test_error = evaluate(model, trainer)
        last = {"epoch": epoch, "iteration": iteration, "train_error": wrong / seen, "test_loss": test_loss,
                "test_error": test_error, "test_accuracy": 1 - test_error, "seconds": time.perf_counter() - start}
        report(f"epoch {epoch}: test error {100 * test_error:.2f}% (loss {test_loss:.4f}), "
               f"train error {100 * wrong / seen:.2f}%, {last['seconds']:.1f} s so far")
        if iteration >= trainer.total_iterations:
            break
    return last


def evaluate(model, trainer: Trainer) -> tuple[float, float]:
    """(mean loss, error rate) on the trainer's held-out loader, in eval mode."""
    model.eval()
    loss_sum = wrong = n = 0.0
    with torch.no_grad():
        for x, y in trainer.test_loader:
            logits, labels = model(_tensor(x, trainer)), torch.from_numpy(y)
            loss_sum += float(F.cross_entropy(logits, labels)) * len(y)
            wrong, n = wrong + int((logits.argmax(1) != labels).sum()), n + len(y)
    model.train()
    return loss_sum / n, wrong / n


def _tensor(images, trainer: Trainer) -> torch.Tensor:
    """A batch of the loader's images in the run's dtype (float32: the same memory, no copy)."""
    return torch.from_numpy(images).to(DTYPES[trainer.cfg.dtype])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20", help="a CIFAR ResNet, resnet6n+2 (default resnet20)")
    parser.add_argument("--threads", type=int, default=cpu.get_num_threads(),
                        help="PyTorch's intra-op threads (default: minires' own, OMP_NUM_THREADS or every core)")
    for name in ("epochs", "batch-size", "seed", "train-size", "test-size"):
        parser.add_argument(f"--{name}", type=int, help="as in minires train (default: minires train's)")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="as in minires train (default float32)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    args = parser.parse_args(argv)
    settings = {key: value for key, value in vars(args).items()
                if key not in ("threads", "progress") and value is not None}
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:          # the trainer writes nothing until it trains
        trainer = minires_recipe(out, **settings)
        cfg = trainer.cfg
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads: {cfg.model} on {cfg.data} "
              f"({len(trainer.train_loader.dataset)} training images), {trainer.total_iterations} iterations of "
              f"batch {cfg.batch_size}, lr {cfg.lr} / 10 at iterations {trainer.scheduler.milestones}, momentum "
              f"{cfg.momentum}, weight decay {cfg.weight_decay}, seed {cfg.seed}", flush=True)
        final = train(torch_model(trainer), trainer, progress=args.progress)
    print(f"PyTorch: {100 * final['test_accuracy']:.2f}% held-out accuracy after {final['epoch']} epochs; wall time "
          f"{final['seconds']:.1f} s (training + evaluation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
