"""Which functions the walk probes go to (collector/fprobes.py) and the
fentry program built for each case (collector/program.py), without root."""

import re
import shutil
import subprocess

import pytest

from anonscope import bpf
from anonscope.collector import abi, fprobes, program
from anonscope.collector.btf import BTF
from btfgen import make_btf


def test_walks_go_to_rmap_walk_anon_and_ksm_where_they_are_functions():
    probes, notes = fprobes.walk_probes(walk_anon=True, walk_ksm=True)
    names = [p[0] for p in probes]
    assert "rmap_walk_anon" in names and "rmap_walk_ksm" in names
    assert "rmap_walk" not in names and "rmap_walk_locked" not in names
    assert notes and not notes[0]["attached"] and "rmap_walk_anon and rmap_walk_ksm" in notes[0]["reason"]
    # the non-walk probes are all still there
    assert set(names) - {"rmap_walk_anon", "rmap_walk_ksm"} == \
        {p[0] for p in fprobes.FUNCTION_PROBES} - set(fprobes.WALK_ENTRIES)


def test_without_ksm_only_rmap_walk_anon():
    probes, _ = fprobes.walk_probes(walk_anon=True, walk_ksm=False)
    assert [p[0] for p in probes if "walk" in p[0]] == ["rmap_walk_anon"]


def test_inlined_rmap_walk_anon_keeps_the_entry_points():
    probes, notes = fprobes.walk_probes(walk_anon=False, walk_ksm=True)
    assert probes == fprobes.FUNCTION_PROBES and notes == []


def kfunc_probes(**defines):
    """The KFUNC_PROBE/KRETFUNC_PROBE functions bpf/fprobes.bpf.c declares
    with these defines, as the C preprocessor selects them."""
    d = {"FP_KFUNC": 1, "FP_WALKS": 1, "FP_WALK_ANON": 1, "FP_WALK_KSM": 1, "FP_RSS": 0, **defines}
    out = subprocess.run(["cpp", "-P"] + [f"-D{k}={v}" for k, v in d.items()],
                         input=bpf.source("fprobes.bpf.c"), capture_output=True, text=True, check=True).stdout
    return re.findall(r"\b(KFUNC_PROBE|KRETFUNC_PROBE)\((\w+)", out)


@pytest.mark.skipif(shutil.which("cpp") is None, reason="no C preprocessor")
def test_fentry_program_selects_the_walk_functions_by_define():
    both = kfunc_probes()
    assert ("KFUNC_PROBE", "rmap_walk_anon") in both and ("KRETFUNC_PROBE", "rmap_walk_ksm") in both
    assert not {f for _k, f in both} & set(fprobes.WALK_ENTRIES)
    assert {f for _k, f in kfunc_probes(FP_WALK_KSM=0)} & {"rmap_walk_ksm", "rmap_walk"} == set()
    inlined = {f for _k, f in kfunc_probes(FP_WALK_ANON=0)}
    assert {"rmap_walk", "rmap_walk_locked"} <= inlined and "rmap_walk_anon" not in inlined
    # every fentry probe kfunc_report looks for is one the program declares
    for walk_anon, walk_ksm in ((1, 1), (1, 0), (0, 1)):
        declared = {f for _k, f in kfunc_probes(FP_WALK_ANON=walk_anon, FP_WALK_KSM=walk_ksm)}
        wanted = {p[0] for p in fprobes.walk_probes(bool(walk_anon), bool(walk_ksm))[0]}
        assert declared == wanted


VMA_MEMBERS = [(m, 64 * i) for i, m in enumerate(("vm_start", "vm_end", "vm_mm", "vm_pgoff", "vm_file", "anon_vma"))]
FP_STRUCTS = {"vm_area_struct": (192, VMA_MEMBERS),
              "folio": (64, [("flags", 0), ("mapping", 192), ("index", 256), ("_flags_1", 512)]),
              "rmap_walk_control": (48, [("rmap_one", 128)])}
MM_ENUM = {"": {"MM_FILEPAGES": 0, "MM_ANONPAGES": 1, "MM_SWAPENTS": 2, "MM_SHMEMPAGES": 3}}


def test_kernel_facts_say_which_walk_functions_btf_has():
    layout = program.fprobe_layout(BTF(make_btf(FP_STRUCTS, funcs=["rmap_walk_anon"],
                                                enums={"pageflags": {"PG_head": 6}})))
    assert layout["FP_WALK_ANON"] == 1 and layout["FP_WALK_KSM"] == 0
    assert layout["VMA_ANON_VMA_OFF"] == 40


@pytest.mark.skipif(shutil.which("cpp") is None, reason="no C preprocessor")
def test_without_struct_folio_the_call_probes_still_run():
    """A BTF without struct folio's fields (kernels before 6.1 have neither
    order field; before 5.16 no folio): the walk probes are left out with the
    reason, the call probes are kept, and the program declares exactly those."""
    structs = {k: v for k, v in FP_STRUCTS.items() if k != "folio"}
    layout = program.fprobe_layout(BTF(make_btf(structs, enums={"pageflags": {"PG_head": 6}})))
    assert layout["FP_WALKS"] == 0 and "folio" in layout["WALKS_MISSING"]
    assert layout["VMA_ANON_VMA_OFF"] == 40                      # the call probes' offsets are there
    walks = fprobes.Walks(False, layout["WALKS_MISSING"])
    probes, notes = fprobes.walk_probes(True, True, walks)
    assert {p[0] for p in probes} == {"__anon_vma_prepare", "anon_vma_fork", "anon_vma_clone", "unlink_anon_vmas"}
    assert not notes[0]["attached"] and "call probes need no struct folio" in notes[0]["reason"]
    declared = {f for _k, f in kfunc_probes(FP_WALKS=0)}
    assert declared == {p[0] for p in probes}


def test_possible_cpus(tmp_path):
    for text, n in (("0-1\n", 2), ("0\n", 1), ("0-3,8-11\n", 12)):
        (tmp_path / "possible").write_text(text)
        assert program.possible_cpus(str(tmp_path / "possible")) == n
    assert program.possible_cpus(str(tmp_path / "absent")) == 0


def test_anon_rss_counter_up_to_6_1_and_from_6_2():
    # 6.1: struct mm_rss_stat { atomic_long_t count[4]; } at mm_struct.rss_stat
    old = BTF(make_btf({"mm_struct": (1024, [("rss_stat", 8 * 700)]),
                        "mm_rss_stat": (32, [("count", 0)])}, enums=MM_ENUM))
    assert program.rss_layout(old) == {"FP_RSS": abi.Rss.ATOMIC, "MM_ANON_RSS_OFF": 700 + 8}
    # 6.2+: struct percpu_counter rss_stat[NR_MM_COUNTERS]
    new = BTF(make_btf({"mm_struct": (1200, [("rss_stat", 8 * 960)]),
                        "percpu_counter": (40, [("count", 64), ("counters", 256)])}, enums=MM_ENUM))
    layout = program.rss_layout(new)
    assert layout == {"FP_RSS": abi.Rss.PERCPU, "MM_ANON_RSS_OFF": 960 + 40,
                      "PCC_COUNT_OFF": 8, "PCC_COUNTERS_OFF": 32}
    # summing the per-CPU shares needs __per_cpu_offset and the possible CPUs
    full = program.percpu_facts(layout, 0xFFFFFFFF82000000, 4)
    assert full["FP_RSS"] == abi.Rss.PERCPU and full["NR_CPUS_POSSIBLE"] == 4
    assert program.percpu_facts(layout, 0, 4)["FP_RSS"] == abi.Rss.NONE
    assert program.percpu_facts(layout, 0xFFFFFFFF82000000, 5000)["FP_RSS"] == abi.Rss.NONE
    # neither: the copy probe is left out, the rest goes on
    assert program.rss_layout(BTF(make_btf({"mm_struct": (8, [])})))["FP_RSS"] == abi.Rss.NONE


@pytest.mark.skipif(shutil.which("cpp") is None, reason="no C preprocessor")
def test_copy_probes_follow_the_counter_kind():
    for fp_rss, want in ((0, set()), (1, {"copy_page_range"}), (2, {"copy_page_range"})):
        declared = {f for _k, f in kfunc_probes(FP_RSS=fp_rss)} - {p[0] for p in fprobes.FUNCTION_PROBES} \
            - {p[0] for p in fprobes.WALK_ANON}
        assert declared == want
        assert {p[0] for p in fprobes.copy_probes(fp_rss)} == want


def test_7_3_names_and_clone_operation_come_from_btf():
    """7.3 renamed the interval-tree iterators (anon_rmap_tree_iter_*) and,
    like 7.2, gives anon_vma_clone() an enum vma_operation argument; the
    layout says which the kernel has, with the enumerators' own values."""
    ops = {"VMA_OP_SPLIT": 0, "VMA_OP_MERGE_UNFAULTED": 1, "VMA_OP_REMAP": 2, "VMA_OP_FORK": 3}
    new = program.fprobe_layout(BTF(make_btf(FP_STRUCTS, funcs=["rmap_walk_anon", "anon_rmap_tree_iter_first"],
                                             enums={"pageflags": {"PG_head": 6}, "vma_operation": ops})))
    assert new["FP_ITER_RMAP_TREE"] == 1 and new["FP_CLONE_OP"] == 1
    assert [new[d] for d in program.VMA_OPS] == [0, 1, 2, 3]
    old = program.fprobe_layout(BTF(make_btf(FP_STRUCTS, funcs=["anon_vma_interval_tree_iter_first"],
                                             enums={"pageflags": {"PG_head": 6}})))
    assert old["FP_ITER_RMAP_TREE"] == 0 and old["FP_CLONE_OP"] == 0


@pytest.mark.skipif(shutil.which("cpp") is None, reason="no C preprocessor")
def test_fentry_program_probes_the_iterators_the_kernel_has():
    for rmap_tree, names in ((1, fprobes.ITERATORS_7_3), (0, fprobes.ITERATORS)):
        declared = {f for _k, f in kfunc_probes(FP_ITER_RMAP_TREE=rmap_tree)}
        other = fprobes.ITERATORS if rmap_tree else fprobes.ITERATORS_7_3
        assert set(names) <= declared and not set(other) & declared
        wanted = {p[0] for p in fprobes.walk_probes(True, True, fprobes.Walks(rmap_tree=bool(rmap_tree)))[0]}
        assert declared == wanted


@pytest.mark.skipif(shutil.which("cpp") is None, reason="no C preprocessor")
def test_fexit_of_anon_vma_clone_reads_the_return_value_after_the_operation():
    """fexit's return value comes after every argument: with the 7.x
    operation argument the program must declare it, or it reads the
    operation (1 for a merge, 2 for an mremap) as the return value."""
    def clone_exit(**d):
        defines = {"FP_KFUNC": 1, "FP_WALKS": 0, **d}
        out = subprocess.run(["cpp", "-P"] + [f"-D{k}={v}" for k, v in defines.items()],
                             input=bpf.source("fprobes.bpf.c"), capture_output=True, text=True, check=True).stdout
        return re.search(r"KRETFUNC_PROBE\(anon_vma_clone, ([^)]*)\)", out).group(1)
    assert clone_exit(FP_CLONE_OP=1) == "void *dst, void *src, int op, int ret"
    assert clone_exit(FP_CLONE_OP=0) == "void *dst, void *src, int ret"


class _FakeBPF:
    """bcc's get_kprobe_functions over a fixed symbol list, counting calls."""

    def __init__(self, functions):
        self.functions, self.calls = functions, 0

    def get_kprobe_functions(self, pattern):
        self.calls += 1
        return [f.encode() for f in self.functions if re.match(pattern.decode(), f)]


def test_symbols_are_looked_up_in_one_pass():
    """Each bcc lookup reads all of available_filter_functions: one for all
    the probes. A compiler-renamed copy stands in for a missing name; a
    name's prefix (rmap_walk of rmap_walk_anon) does not."""
    bpf = _FakeBPF(["rmap_walk_anon", "rmap_walk_locked", "anon_vma_clone.isra.0", "copy_page_range"])
    got = fprobes.symbols(bpf, ["rmap_walk", "rmap_walk_anon", "anon_vma_clone", "unlink_anon_vmas"])
    assert bpf.calls == 1
    assert got == {"rmap_walk": None, "rmap_walk_anon": "rmap_walk_anon",
                   "anon_vma_clone": "anon_vma_clone.isra.0", "unlink_anon_vmas": None}
