"""A plain-text table, the one format the benchmarks print and commit."""
from __future__ import annotations


def cell(value, digits: int = 2) -> str:
    """A number with ``digits`` decimals, a string as is, ``-`` for None."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_table(headers: list[str], rows: list[list]) -> str:
    """Columns padded to their widest cell; text left-aligned, numbers right-aligned."""
    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) for i in range(len(headers))]

    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in text])
