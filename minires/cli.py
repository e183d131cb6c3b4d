"""The ``minires`` command: ``minires train | experiment | summary | bench | gradcheck``.

Each subcommand lives beside the code it drives: the module named in ``COMMANDS`` provides
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their command runs,
so ``minires --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "train": ("minires.train", "train a model (progress, metrics, checkpoints, resume)"),
    "experiment": ("minires.experiments", "run one of the paper's experiments (degradation, gradnorms, ...)"),
    "summary": ("minires.summary", "per-layer table of a model: output shapes, parameters, multiply-adds"),
    "bench": ("minires.bench", "time ops and training steps against PyTorch (cpu or gpu)"),
    "gradcheck": ("minires.selfcheck", "gradient-check every op against finite differences"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minires", description="minires: residual networks from scratch")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text).set_defaults(_module=module)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    first, _ = parser.parse_known_args(argv[:1] or ["--help"])
    module = importlib.import_module(first._module)
    command_parser = argparse.ArgumentParser(prog=f"minires {first.command}", description=COMMANDS[first.command][1],
                                             conflict_handler="resolve")  # a command may bring its own -h
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
