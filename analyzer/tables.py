"""Tables of the text and Markdown reports (render.py).

A table is a list: its header (a sequence of cells), then its rows. Its
rows are built once and rendered per format: :func:`text_table` aligns
the columns with a format template, :func:`md_table` makes a pipe table.
Cells are the values themselves; each format formats them as an f-string
would (``format(value, spec)``), so a number keeps its default alignment.
"""


def text_table(template, table):
    """The lines of ``table`` in aligned columns: ``template`` is a
    :meth:`str.format` template of one line (indent, each column's format
    spec, the spaces between them), applied to the header and to each row;
    explicit field numbers (``{2:>7}``) put the columns in another order."""
    return [template.format(*row) for row in table]


def md_table(table):
    """The lines of ``table`` as a Markdown pipe table."""
    header = table[0]
    out = [_md_row(header), "|" + "---|" * len(header)]
    out.extend(_md_row(row) for row in table[1:])
    return out


def _md_row(cells):
    """One line of a pipe table."""
    return "| " + " | ".join(f"{c}" for c in cells) + " |"
