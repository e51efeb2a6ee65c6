import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from anonscope import schema
from anonscope.collector import abi, events
from anonscope.collector.writer import FORK_WAIT_NS, RecordingWriter
from collector_records import OBJ, fork_sequence, record


def read(path):
    return pq.read_table(path).to_pandas()


def test_decode_alloc_free_exit_rows(tmp_path):
    ev = np.concatenate([
        record(abi.Ev.ALLOC, 1_000, obj=OBJ["anon_vma"], path=1, obj_id=4097, aux1=104, comm=b"app\xff"),
        record(abi.Ev.FREE, 2_000, obj=OBJ["anon_vma"], path=10, obj_id=4097),
        record(abi.Ev.FREE, 2_500, obj=OBJ["anon_vma_chain"], path=9, obj_id=8193,
               flags=abi.Flag.PREEXISTING),
        record(abi.Ev.EXIT, 3_000, flags=abi.Flag.GROUP_DEAD | abi.Flag.GROUP_DEAD_KNOWN),
        record(abi.Ev.EXIT, 3_100, flags=0),
    ])
    w = RecordingWriter(str(tmp_path / "r.parquet"), t0_ns=500)
    w.add_events(ev)
    w.close({})
    df = read(tmp_path / "r.parquet")
    assert list(df.event) == ["alloc", "free", "free", "exit", "exit"]
    assert list(df.ts_ns) == [500, 1500, 2000, 2500, 2600]
    assert df.object[0] == "anon_vma" and df.path[0] == "fault" and df.bytes[0] == 104
    assert df.comm[0] == "app\ufffd"  # undecodable byte replaced, not dropped
    assert df.path[1] == "put" and df.obj_id[1] == df.obj_id[0]
    assert df.path[2] == "unlink" and bool(df.preexisting[2]) and not bool(df.preexisting[1])
    assert df.group_dead[3] == True and df.group_dead.isna()[4]  # noqa: E712
    assert df.owner_pid[0] == 100 and df.owner_pid.isna()[1]
    assert df.bytes.isna()[1] and df.object.isna()[3]


def test_fork_path_objects_belong_to_the_child_even_across_batches(tmp_path):
    seq = fork_sequence(10, parent=100, child=101, fork_id=7, vmas=2)
    w = RecordingWriter(str(tmp_path / "r.parquet"), t0_ns=0)
    w.add_events(seq[:4])      # the fork row has not arrived yet
    assert w.held_back == 4
    w.add_events(seq[4:])
    w.close({})
    df = read(tmp_path / "r.parquet")
    allocs = df[df.event == "alloc"]
    assert len(allocs) == 6
    assert (allocs.owner_pid == 101).all() and (allocs.pid == 100).all()
    assert (allocs.fork_id == 7).all()
    fork = df[df.event == "fork"].iloc[0]
    assert fork.child_pid == 101 and fork.fork_id == 7 and fork.shares_mm == False  # noqa: E712
    assert list(df.ts_ns) == sorted(df.ts_ns), "order kept"


def test_failed_fork_objects_get_no_owner(tmp_path):
    orphan = record(abi.Ev.ALLOC, 10, obj=OBJ["anon_vma"], path=2, obj_id=1, fork_id=99, aux1=104)
    later = record(abi.Ev.ALLOC, 10 + FORK_WAIT_NS + 1, obj=OBJ["anon_vma"], path=1, obj_id=2, aux1=104)
    w = RecordingWriter(str(tmp_path / "r.parquet"), t0_ns=0)
    w.add_events(orphan)
    w.add_events(later)
    assert w.held_back == 0, "no longer held back once the fork is overdue"
    w.close({})
    df = read(tmp_path / "r.parquet")
    assert df.owner_pid.isna()[0] and df.owner_pid[1] == 100


def test_metadata_rename_and_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr("anonscope.collector.writer.ROW_GROUP", 1000)
    path = tmp_path / "r.parquet"
    w = RecordingWriter(str(path), t0_ns=0)
    n = 3500
    ev = np.concatenate([record(abi.Ev.ALLOC, i, obj=OBJ["anon_vma_chain"], path=1, obj_id=i + 1, aux1=64)
                         for i in range(n)])
    for chunk in np.array_split(ev, 7):
        w.add_events(chunk)
    assert (tmp_path / "r.parquet.partial").exists() and not path.exists()
    w.add_user_rows([{"ts_ns": 5, "event": "slab", "cpu": -1, "slab_cache": "anon_vma", "slab_active": 3,
                      "slab_total": 4, "slab_objsize": 104, "slab_aliases": 0}])
    w.close({"lost": {"ringbuf": 0}})
    assert path.exists() and not (tmp_path / "r.parquet.partial").exists()
    md = pq.read_metadata(path)
    assert md.num_rows == n + 1
    assert max(md.row_group(i).num_rows for i in range(md.num_row_groups)) <= 1000
    meta = {k.decode(): json.loads(v) for k, v in md.metadata.items() if k.startswith(b"anonscope.")}
    assert meta["anonscope.schema_version"] == schema.SCHEMA_VERSION
    assert meta["anonscope.events"] == n + 1
    assert meta["anonscope.lost"] == {"ringbuf": 0}
    assert pq.read_schema(path).names == schema.SCHEMA.names


def test_schema_and_docs_agree():
    """Every column and metadata key is documented in docs/schema.md."""
    from pathlib import Path
    doc = (Path(__file__).resolve().parent.parent / "docs" / "schema.md").read_text()
    for name in schema.COLUMNS:
        assert f"| `{name}` |" in doc, name
    for key in schema.METADATA:
        assert f"`{key}`" in doc, key
    assert f"version {schema.SCHEMA_VERSION})" in doc


@pytest.mark.parametrize("code,name", sorted(events.PATH_NAMES.items()))
def test_every_path_code_has_a_documented_name(code, name):
    assert name in set(schema.ALLOC_PATHS) | set(schema.VMA_ALLOC_PATHS) | set(schema.FREE_PATHS)


def test_kernel_addresses_are_never_written_as_ids(tmp_path):
    """Pointer anonymisation: ids made in the kernel are small per-run
    numbers; anything that looks like a kernel address is refused unless
    --raw-pointers asked for addresses."""
    from anonscope.collector.writer import PointerLeak
    leak = record(abi.Ev.ALLOC, 1, obj=OBJ["anon_vma"], path=1, obj_id=0xFFFF888004A1B2C0, aux1=104)
    w = RecordingWriter(str(tmp_path / "r.parquet"), t0_ns=0)
    with pytest.raises(PointerLeak):
        w.add_events(leak)
    raw = RecordingWriter(str(tmp_path / "raw.parquet"), t0_ns=0, raw_pointers=True)
    raw.add_events(leak)
    raw.close({"raw_pointers": True})
    assert read(tmp_path / "raw.parquet").obj_id[0] == 0xFFFF888004A1B2C0 - (1 << 64)
    ok = record(abi.Ev.ALLOC, 1, obj=OBJ["anon_vma"], path=1, obj_id=(123456 << 12) | 1, aux1=104)
    w.add_events(ok)
    w.close({})
    assert read(tmp_path / "r.parquet").obj_id[0] == (123456 << 12) | 1


def census_rows(tag=0):
    """What bpf_iter__task_vma writes for one VMA and its anon_vma, plus a
    call row of the same VMA (function-probe layout)."""
    ev = np.zeros(3, dtype=events.FPROBE_DTYPE)
    ev["kind"] = [abi.Ev.CENSUS, abi.Ev.CENSUS, abi.Ev.CALL]
    ev["ts"] = [10, 10, 20]
    ev["pid"] = ev["tgid"] = 7
    ev["object"] = [OBJ["vm_area_struct"], OBJ["anon_vma"], 0]
    ev["obj_id"] = [tag | 4097, tag | 4097, 0]          # the VMA row names its anon_vma
    ev["fork_id"] = [0, tag | 4097, 0]                  # anon_vma row: its root (itself)
    ev["aux1"] = [0, 1, 0]                              # num_children
    ev["aux2"] = [0, abi.NOT_IN_KERNEL, 0]           # num_active_vmas unknown (before 6.0)
    ev["vma_id"] = [tag | 8193, 0, tag | 8193]
    ev["mm_id"] = [tag | 12289, 0, tag | 12289]
    ev["vm_start"], ev["vm_end"] = [0x1000, 0, 0x1000], [0x3000, 0, 0x3000]
    ev["count"] = [3, 0, 2]
    ev["flags"] = [abi.Flag.TRUNCATED | abi.Flag.FILE, 0, 0]
    ev["path"] = [0, 0, 4]                              # call: unlink_anon_vmas
    return ev


def test_census_rows_decode_beside_call_rows(tmp_path):
    w = RecordingWriter(str(tmp_path / "r.parquet"), t0_ns=0, dtype=events.FPROBE_DTYPE)
    w.add_events(census_rows())
    w.close({})
    df = read(tmp_path / "r.parquet")
    vma, av, call = df.iloc[0], df.iloc[1], df.iloc[2]
    assert list(df.event) == ["census", "census", "call"]
    assert vma.object == "vm_area_struct" and vma.vma_id == 8193 and vma.anon_vma_id == 4097
    assert vma.chain_avcs == 3 and bool(vma.chain_truncated) and bool(vma.vma_file)
    assert vma.vm_start == 0x1000 and vma.vm_end == 0x3000 and vma.mm_id == 12289
    assert np.isnan(vma.obj_id) and np.isnan(vma.root_id)
    assert av.object == "anon_vma" and av.obj_id == 4097 and av.root_id == 4097
    assert av.num_children == 1 and np.isnan(av.num_active_vmas)  # not in this kernel: null
    assert np.isnan(av.vma_id) and np.isnan(av.chain_avcs)
    assert call.func == "unlink_anon_vmas" and call.vma_id == vma.vma_id and call.call_objects == 2
    assert np.isnan(call.chain_avcs) and np.isnan(call.anon_vma_id)


def test_census_of_its_own_program_is_added_in_any_run(tmp_path):
    """A tracepoint-only run writes 64-byte events; the census program's
    rows (128 bytes, ids tagged) go in through add_census."""
    from anonscope.collector.program import CENSUS_ID_TAG
    w = RecordingWriter(str(tmp_path / "r.parquet"), t0_ns=0)
    w.add_events(record(abi.Ev.ALLOC, 5, obj=OBJ["anon_vma"], path=1, obj_id=4097, aux1=104))
    w.add_census(census_rows(CENSUS_ID_TAG)[:2])
    w.close({})
    df = read(tmp_path / "r.parquet").sort_values("ts_ns", kind="stable")
    assert list(df.event) == ["alloc", "census", "census"]
    census = df[df.event == "census"]
    assert (census.anon_vma_id.dropna() == CENSUS_ID_TAG | 4097).all()
    assert int(df.obj_id.iloc[0]) != int(census.obj_id.dropna().iloc[0])  # the tag keeps ids apart
