"""HTML pages of the analyzer (report and compare, analyzer/htmlreport.py)
read back for tests: SVGs with their drawn paths, figures, links, text
outside the SVGs, ids and tables by class."""

from html.parser import HTMLParser


class Page(HTMLParser):
    """What the tests look at in a page: the SVGs (with their non-empty
    paths), figures, src/href attributes, the text outside the SVGs, and
    the tables (cells per row) by class."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.svgs = []          # per <svg>: paths with a non-empty d
        self.figures = 0
        self.links = []         # (tag, attribute, value) of src= and href=
        self.text = []
        self.tables = []        # (class, rows)
        self.ids = []
        self._svg_depth = 0
        self._table = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k, v in attrs:
            if k in ("src", "href") or k.endswith(":href"):
                self.links.append((tag, k, v or ""))
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "svg":
            if not self._svg_depth:
                self.svgs.append(0)
            self._svg_depth += 1
        elif tag == "path" and self._svg_depth and (a.get("d") or "").strip():
            self.svgs[-1] += 1
        elif tag == "figure":
            self.figures += 1
        elif tag == "table":
            self._table = (a.get("class"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "svg" and self._svg_depth:
            self._svg_depth -= 1
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table[1].append(self._row)
            self._row = None
        elif tag == "table" and self._table is not None:
            self.tables.append(self._table)
            self._table = None

    def handle_data(self, data):
        if self._svg_depth:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def tables_of(self, cls):
        return [rows for c, rows in self.tables if c == cls]


def parse(text):
    p = Page()
    p.feed(text)
    p.close()
    return p


def outside_refs(page):
    """The src/href values of ``page`` that are not references inside it
    (``#id``): a self-contained page has none."""
    return [(tag, attr, v) for tag, attr, v in page.links if not v.startswith("#")]
