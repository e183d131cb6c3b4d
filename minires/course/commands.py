"""``minires course build | grade | book``: the student edition, the grader and the rendered book."""
from __future__ import annotations

import argparse

from ..checks import positive_int
from .grade import TUTORIALS_DIR


def folder(text: str) -> str:
    """A folder argument: not empty (``--out ""`` would otherwise mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty folder name; give a folder, e.g. student/")
    return text
folder.__name__ = "a folder"  # argparse names the type in its messages


def _action(sub, name: str, text: str) -> argparse.ArgumentParser:
    """An action's parser, its line both in ``minires course --help`` and atop its own ``--help``."""
    return sub.add_parser(name, help=text, description=text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = _action(sub, "build", "write the student edition: solutions replaced by stubs, checks kept")
    build.add_argument("--out", required=True, type=folder,
                       help="folder for the student notebooks (not the course's own folder)")
    build.add_argument("--source", type=folder, default=str(TUTORIALS_DIR), help="the course notebooks (default: %(default)s)")
    build.add_argument("--force", action="store_true",
                       help="replace notebooks in --out even if they were edited since they were built (a student's answers)")

    grade = _action(sub, "grade", "run a submitted notebook (or a folder of them) and score each exercise")
    grade.add_argument("path", help="a notebook, or a folder of numbered notebooks")
    grade.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    checks = grade.add_mutually_exclusive_group()
    checks.add_argument("--checks", type=folder, default=str(TUTORIALS_DIR),
                        help="folder of the course notebooks whose checks are used (default: %(default)s); a submission "
                             "is matched to its notebook by the metadata the student edition carries, its exercises "
                             "and its file name")
    checks.add_argument("--own-checks", action="store_true",
                        help="grade by the checks in the submission itself, which a student can edit (NOT official)")
    grade.add_argument("--timeout", type=positive_int, default=120,
                       help="whole seconds allowed per cell; a cell that runs longer is interrupted (default: %(default)s)")

    book = _action(sub, "book", "execute the tutorials and write them as static HTML with an index page")
    book.add_argument("--out", required=True, type=folder, help="folder for the HTML pages")
    book.add_argument("--source", type=folder, default=str(TUTORIALS_DIR), help="the course notebooks (default: %(default)s)")
    book.add_argument("--timeout", type=positive_int, default=120,
                      help="whole seconds allowed per cell; a cell that runs longer is interrupted (default: %(default)s)")


def run(args) -> int:
    if args.action == "build":
        from .editions import build_student_edition

        written = build_student_edition(args.source, args.out, force=args.force)
        print(f"wrote the student edition of {len(written)} notebooks to {args.out}")
        return 0
    if args.action == "grade":
        from .grade import format_json, format_table, grade_path

        grades = grade_path(args.path, args.checks, timeout=args.timeout, own_checks=args.own_checks)
        print(format_json(grades) if args.json else format_table(grades))
        return 0
    from .book import build_book

    pages = build_book(args.out, args.source, timeout=args.timeout)  # a BookError: minires' one-line error, status 1
    print(f"wrote {len(pages)} pages to {args.out}; open {pages[0]}")
    return 0
