"""Tables of the text and Markdown reports (render.py, compare.py,
fleetrender.py), rendered by tabulate.

A table is a list: its header (a sequence of cells), then its rows. Its
rows are built once and rendered per format: :func:`text_table` aligns
the columns as plain text, :func:`md_table` makes a Markdown pipe table
with the same alignment. ``align`` gives each column's alignment, one
letter per column: ``l`` (left) or ``r`` (right); a column it does not
cover is right-aligned. Cells are printed as they are (``str``): a
number is never re-formatted.
"""

from tabulate import tabulate

_ALIGN = {"l": "left", "r": "right"}


def text_table(table, align="l", indent="  "):
    """The lines of ``table`` in aligned columns, each line after ``indent``."""
    return [indent + line.rstrip() for line in _render(table, align, "plain").splitlines()]


def md_table(table, align="l"):
    """The lines of ``table`` as a Markdown pipe table."""
    return _render(table, align, "pipe").splitlines()


def _render(table, align, fmt):
    """``table`` in tabulate's format ``fmt``."""
    cell = _md_cell if fmt == "pipe" else str
    head, *rows = table
    return tabulate([[cell(c) for c in row] for row in rows], headers=[cell(c) for c in head],
                    tablefmt=fmt, colalign=_colalign(align, len(head)), disable_numparse=True)


def _colalign(align, n):
    """tabulate's column alignments of ``align`` for ``n`` columns."""
    return tuple(_ALIGN[a] for a in align.ljust(n, "r")[:n])


def _md_cell(value):
    """A Markdown cell's text: the column separator escaped."""
    return str(value).replace("|", "\\|")
