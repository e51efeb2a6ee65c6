"""The replay-order reader (analyzer/stream.py): every kept row once, in the
order of a stable sort of the whole file by ts_ns (numpy's, computed here
independently), holding only the rows of row groups that overlap in time."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from anonscope import schema as S
from anonscope.analyzer import files, load, report, stream
from eventgen import Gen
from golden import build, differences
from scenarios import zygote
from test_analyzer_golden import SCENARIOS

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURES = sorted(p.name for p in FIXTURE_DIR.glob("*.parquet"))

GROUP = 20


def _write(table, path, meta, group=GROUP, stats=True):
    meta = {S.META_PREFIX + k: json.dumps(v) for k, v in meta.items()}
    with pq.ParquetWriter(path, table.schema, write_statistics=stats) as w:
        w.write_table(table, row_group_size=group)
        w.add_key_value_metadata(meta)
    return path


def _swap_at_group_edges(table, group=GROUP):
    """The rows with the last row of every row group exchanged with the first
    of the next: each group overlaps the next in time, and no other."""
    idx = np.arange(table.num_rows)
    for edge in range(group, table.num_rows, group):
        idx[edge - 1], idx[edge] = idx[edge], idx[edge - 1]
    return table.take(pa.array(idx))


def _chunks(path):
    src = files.RecordingFiles(path)
    layout = load._layout(src)
    reader = stream.ReplayReader(src, path, layout.columns, layout.kind_of_event)
    return list(reader.chunks()), reader


def _replayed(chunks):
    """(ts_ns, event, obj_id) of every row the chunks give, in their order."""
    out = []
    for c in chunks:
        t = stream.table_of(c.batch)
        out += zip(t.column("ts_ns").to_pylist(), t.column("event").to_pylist(), t.column("obj_id").to_pylist())
    return out


def _expected(path):
    """(ts_ns, event, obj_id) of the file's rows, stably sorted by ts_ns."""
    t = pq.read_table(path, columns=["ts_ns", "event", "obj_id"])
    order = np.argsort(t.column("ts_ns").to_numpy(), kind="stable")
    t = t.take(pa.array(order))
    return list(zip(t.column("ts_ns").to_pylist(), t.column("event").to_pylist(), t.column("obj_id").to_pylist()))


def test_overlapping_row_groups_come_out_in_replay_order_holding_two_groups_at_most(tmp_path):
    g = zygote(6, 2, 5, 3)
    table = _swap_at_group_edges(g.table())
    path = _write(table, str(tmp_path / "run.parquet"), g.metadata())
    assert pq.ParquetFile(path).metadata.num_row_groups > 3
    chunks, reader = _chunks(path)
    assert _replayed(chunks) == _expected(path)
    assert [c.first for c in chunks] == list(np.cumsum([0] + [len(c.ts) for c in chunks[:-1]]))
    assert reader.positions == reader.rows == table.num_rows
    assert max(len(c.ts) for c in chunks) <= 2 * GROUP          # released group by group
    assert len(chunks) >= table.num_rows // GROUP - 1
    assert all((np.diff(c.ts) >= 0).all() for c in chunks)


def test_report_of_overlapping_groups_equals_the_sorted_file(tmp_path):
    g = zygote(6, 2, 5, 3)
    table = g.table()
    whole = report.build(load.load(_write(table, str(tmp_path / "a.parquet"), g.metadata(), group=65536)))
    mixed = report.build(load.load(_write(_swap_at_group_edges(table), str(tmp_path / "b.parquet"),
                                          g.metadata())))
    whole["source"] = mixed["source"]
    assert not list(differences(whole, mixed))


def test_row_groups_without_statistics_are_ordered_from_their_ts(tmp_path):
    g = zygote(4, 1, 4, 2)
    path = _write(_swap_at_group_edges(g.table()), str(tmp_path / "run.parquet"), g.metadata(), stats=False)
    assert not pq.ParquetFile(path).metadata.row_group(0).column(0).is_stats_set
    chunks, _ = _chunks(path)
    assert _replayed(chunks) == _expected(path)
    assert max(len(c.ts) for c in chunks) <= 2 * GROUP


def test_a_late_row_holds_everything_after_its_time(tmp_path):
    """The last row group holds the earliest row: nothing can be released
    before it is read, and the order is still the sort's."""
    g = zygote(4, 1, 4, 2)
    table = g.table()
    idx = np.r_[1:table.num_rows, 0]
    path = _write(table.take(pa.array(idx)), str(tmp_path / "run.parquet"), g.metadata())
    chunks, _ = _chunks(path)
    assert len(chunks) == 1
    assert _replayed(chunks) == _expected(path)


def test_rows_of_no_kind_are_read_but_not_numbered(tmp_path):
    """A lock row without lock_id (the lock kind has no values in the file,
    so it is not read): counted in rows, given no position."""
    g = zygote(3, 0, 2, 1)
    g._emit(event="lock", pid=100, tgid=100, comm="zygote")
    g.rows.insert(5, g.rows.pop())
    path = g.write(str(tmp_path / "run.parquet"))
    chunks, reader = _chunks(path)
    assert reader.rows == len(g.rows)
    assert reader.positions == len(g.rows) - 1
    assert "lock" not in {e for _, e, _ in _replayed(chunks)}
    assert reader.end_ts == max(r["ts_ns"] for r in g.rows if r["event"] != "lock")


@pytest.mark.parametrize("name", sorted(SCENARIOS) + [f"fixture:{f}" for f in FIXTURES])
def test_tiny_chunks_give_the_same_report(tmp_path, monkeypatch, name):
    """Every chunk consumer (the matcher, the live counts, the process
    tally) and the reader split at other places: the same report."""
    if name.startswith("fixture:"):
        path = str(FIXTURE_DIR / name.split(":", 1)[1])
    else:
        path = SCENARIOS[name]().write(str(tmp_path / "run.parquet"), raw_pointers=True)
    want = build(path)
    monkeypatch.setattr(stream, "CHUNK_ROWS", 7)
    monkeypatch.setattr(stream, "BATCH_ROWS", 5)
    assert not list(differences(want, build(path)))


def test_one_row_group_out_of_order_read_in_small_batches(tmp_path, monkeypatch):
    """A later batch of the same row group may hold earlier rows: each batch
    is released only up to the group's later batches."""
    g = zygote(6, 2, 5, 3)
    table = g.table()
    n = table.num_rows
    path = _write(table.take(pa.array(np.r_[n // 2:n, 0:n // 2])), str(tmp_path / "run.parquet"),
                  g.metadata(), group=n)
    whole = report.build(load.load(_write(table, str(tmp_path / "a.parquet"), g.metadata(), group=n)))
    monkeypatch.setattr(stream, "BATCH_ROWS", 7)
    chunks, _ = _chunks(path)
    assert _replayed(chunks) == _expected(path)
    mixed = report.build(load.load(path))
    whole["source"] = mixed["source"]
    assert not list(differences(whole, mixed))


def _groups_encoded(table, groups, path, meta):
    """Write ``table``'s rows as the row groups ``groups`` (row indices),
    each with its own comm dictionary in the order the group's rows name them."""
    ci = table.schema.get_field_index("comm")
    ctype = table.schema.field("comm").type
    with pq.ParquetWriter(path, table.schema) as w:
        for rows in groups:
            sub = table.take(pa.array(rows))
            comm = pc.dictionary_encode(sub.column("comm").cast(pa.string())).cast(ctype)
            w.write_table(sub.set_column(ci, pa.field("comm", ctype), comm))
        w.add_key_value_metadata({S.META_PREFIX + k: json.dumps(v) for k, v in meta.items()})
    return path


def test_names_keep_the_files_dictionary_order_when_rows_are_held(tmp_path):
    """Ties are listed in the order the file's batches name the comms
    (dictionary order, batch by batch in file order, of the batches with rows
    of the kind), also when a late row makes the reader hold a batch back."""
    g = Gen()
    g.process(100, "xx")
    g.process(200, "yy")
    g.faults(200, 1)
    g.faults(100, 1)
    g.exec(100, comm="xx")                   # the latest row, written first
    t = g.table()
    ev = t.column("event").to_pylist()
    late = [i for i, e in enumerate(ev) if e == "exec"]
    path = _groups_encoded(t, [late, [i for i in range(len(ev)) if i not in late]],
                           str(tmp_path / "run.parquet"), g.metadata())
    by_comm = report.build(load.load(path))["processes"]["by_comm"]
    assert [c["comm"] for c in by_comm] == ["yy", "xx"] and by_comm[0]["bytes"] == by_comm[1]["bytes"]

    g = Gen()
    g.process(100, "yy")
    g.process(200, "zz")
    v1, v2 = g.fault(100), g.fault(200)
    g.lock(100, v1, 500, func="f")
    g.lock(200, v2, 500, func="f")
    t = g.table()
    ev, comm = t.column("event").to_pylist(), t.column("comm").to_pylist()
    late = [max(i for i, (e, c) in enumerate(zip(ev, comm)) if e == "alloc" and c == "zz")]
    path = _groups_encoded(t, [late, [i for i in range(len(ev)) if i not in late]],
                           str(tmp_path / "locks.parquet"), g.metadata())
    assert [c["comm"] for c in report.build(load.load(path))["locks"]["by_comm"]] == ["yy", "zz"]
