"""Markdown pipe tables of report output, read back without their padding.

analyzer/tables.py renders pipe tables with tabulate, which pads every cell
to its column's width and marks alignment in the separator line. Tests
compare cells, not padding: :func:`md_lines` rewrites each table line as
``| a | b |`` (cells stripped) and each separator line as ``|---|---|``.
"""

import re

_SPLIT = re.compile(r"(?<!\\)\|")
_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


def md_cells(line):
    """The cells of one pipe-table line, stripped."""
    return [c.strip() for c in _SPLIT.split(line.strip())[1:-1]]


def md_lines(text):
    """``text``'s lines, every pipe-table line without its padding."""
    out = []
    for line in text.splitlines():
        if _SEPARATOR.match(line.strip()):
            out.append("|" + "---|" * len(md_cells(line)))
        elif line.startswith("|"):
            out.append("| " + " | ".join(md_cells(line)) + " |")
        else:
            out.append(line)
    return out


def md_text(text):
    """``text`` with every pipe-table line without its padding."""
    return "\n".join(md_lines(text))
