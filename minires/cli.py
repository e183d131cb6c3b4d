"""The ``minires`` command: ``minires train | experiment | summary | bench | gradcheck | course``.

Each subcommand lives beside the code it drives: the module named in ``COMMANDS`` provides
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their command runs,
so ``minires --help`` stays fast.

Errors are one line on stderr, ``minires: error: ...``: exit status 2 for a bad argument (checked by
argparse with the types below, before anything runs), 1 for a failure while running. ``--debug``
(before or after the command) shows the full traceback instead. Output piped into a reader that
stops early (``minires experiment responses --help | head``) ends the command quietly, exit status 1.
Ctrl-C ends it with one line, exit status 130 (the shell's for SIGINT), and the command's own line on
what it kept (``interrupted(args)`` in its module, if it has one: ``train`` names its last checkpoint).
SIGTERM (``kill``, ``timeout``, a batch scheduler's stop) does the same with exit status 143.
``minires`` with no command prints the list of commands to stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback

COMMANDS = {
    "train": ("minires.train", "train a model (progress, metrics, checkpoints, resume)"),
    "experiment": ("minires.experiments", "run an experiment on the paper's nets (degradation, gradnorms, responses, lesion, shortcuts)"),
    "summary": ("minires.summary", "per-layer table of a model: output shapes, parameters, multiply-adds"),
    "bench": ("minires.bench", "time ops and training steps against PyTorch (cpu or gpu)"),
    "gradcheck": ("minires.selfcheck", "gradient-check every op against finite differences"),
    "course": ("minires.course", "the tutorials as a course: student edition, grading, rendered book"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one ``minires: error: ...`` line (exit 2)."""

    def error(self, message):
        self.exit(2, f"minires: error: {self.prog}: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- argument types


def cpu_conv_impl(text: str) -> str:
    """A conv2d implementation that runs on this machine's CPU (``bench cpu --impls``, ``gradcheck --impl``)."""
    from . import backend
    names = backend.available("conv2d", device="cpu")
    if text not in names:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CPU conv2d implementation here; choose from "
                                         f"{', '.join(names)} (the GPU ones are tested by `minires bench gpu`)")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minires", description="minires: residual networks from scratch")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text).set_defaults(_module=module)
    return parser


def _add_debug(parser: argparse.ArgumentParser, default=False) -> None:
    """``--debug`` on a command and on each of its actions (``course build``, ``bench cpu``), so that it may
    follow either; an action's sets it only when given (argparse copies an action's defaults over the command's)."""
    parser.add_argument("--debug", action="store_true", default=default, help="show the full traceback of an error")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_debug(sub, argparse.SUPPRESS)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as an interrupt, so that a command stops as it does on Ctrl-C:
    what it kept is saved and named (a plain SIGTERM would end Python without a word)."""


def _raise_terminated(signum, frame):
    raise Terminated


def main(argv=None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:
        # the reader of stdout has gone: send what is still buffered nowhere, so that Python's flush
        # at exit does not fail a second time with a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def command_parser(name: str):
    """The module of the command ``name`` (a key of COMMANDS) and the parser of its arguments."""
    module = importlib.import_module(COMMANDS[name][0])
    parser = _Parser(prog=f"minires {name}", description=COMMANDS[name][1],
                     conflict_handler="resolve")  # a command may bring its own -h
    module.add_arguments(parser)
    _add_debug(parser)
    return module, parser


def _main(argv: list) -> int:
    debug = argv[:1] == ["--debug"]
    argv = argv[1:] if debug else argv
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    first, _ = parser.parse_known_args(argv[:1])
    module, command = command_parser(first.command)
    args = command.parse_args(argv[1:])
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return int(module.run(args) or 0)
    except BrokenPipeError:
        raise                # not the command's failure: main ends it quietly
    except KeyboardInterrupt as stop:
        return _stopped(module, args, stop, debug)
    except Exception as error:  # noqa: BLE001 -- every failure becomes one line (the traceback with --debug)
        stop = _interrupt_behind(error)
        if stop is not None:
            return _stopped(module, args, stop, debug)
        if debug or args.debug:
            traceback.print_exc()
        else:
            print(f"minires: error: {type(error).__name__}: {error} (--debug shows the traceback)", file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _stopped(module, args, stop: KeyboardInterrupt, debug: bool) -> int:
    """Ctrl-C or SIGTERM: one line naming what the command kept, and the shell's status (130 or 143)."""
    if debug or args.debug:
        traceback.print_exc()
    kept = getattr(module, "interrupted", lambda _: None)(args)
    how, status = ("terminated (SIGTERM)", 143) if isinstance(stop, Terminated) else ("interrupted (Ctrl-C)", 130)
    print(f"minires: {how}{'; ' + kept if kept else ''}", file=sys.stderr)
    return status


def _interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that caused ``error``, if one did: a C extension whose import it interrupted
    reports an ``ImportError`` caused by it (pybind11: \"initialization failed\")."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
