"""Every struct offset and size the collector takes from BTF equals what
the running kernel's own headers say: bcc compiles `_Static_assert`s of
`offsetof()`/`sizeof()` against them (a mismatch fails the compile, naming
the member). Needs headers of the running kernel (the scripts/vm-test
guests have them; this project's host compiles against another kernel's,
docs/collector.md, so there it is skipped as a lack of the host)."""

import pytest

import hostcaps
from anonscope.collector import headers, probes
from anonscope.collector.config import RunConfig

SKIP = hostcaps.integration()
pytestmark = [pytest.mark.root, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]

#: what each define is, in the headers' terms; members of structs that are
#: private to a .c file (kmem_cache in mm/slab.h, userfaultfd_ctx in
#: fs/userfaultfd.c) have no public header to compare with
OFFSETS = {
    "TASK_PID_OFF": ("task_struct", "pid"), "TASK_TGID_OFF": ("task_struct", "tgid"),
    "TASK_MM_OFF": ("task_struct", "mm"), "TASK_COMM_OFF": ("task_struct", "comm"),
    "MM_OWNER_OFF": ("mm_struct", "owner"), "ANON_VMA_ROOT_OFF": ("anon_vma", "root"),
    "ANON_VMA_RWSEM_OFF": ("anon_vma", "rwsem"), "TASK_FILES_OFF": ("task_struct", "files"),
    "FILES_FDT_OFF": ("files_struct", "fdt"), "FDT_MAX_FDS_OFF": ("fdtable", "max_fds"),
    "FDT_FD_OFF": ("fdtable", "fd"), "FILE_PRIVATE_DATA_OFF": ("file", "private_data"),
    "VMA_START_OFF": ("vm_area_struct", "vm_start"), "VMA_END_OFF": ("vm_area_struct", "vm_end"),
    "VMA_MM_OFF": ("vm_area_struct", "vm_mm"), "VMA_PGOFF_OFF": ("vm_area_struct", "vm_pgoff"),
    "VMA_FILE_OFF": ("vm_area_struct", "vm_file"), "VMA_ANON_VMA_OFF": ("vm_area_struct", "anon_vma"),
    "VMA_CHAIN_OFF": ("vm_area_struct", "anon_vma_chain"), "FOLIO_FLAGS_OFF": ("folio", "flags"),
    "FOLIO_MAPPING_OFF": ("folio", "mapping"), "FOLIO_INDEX_OFF": ("folio", "index"),
    "RWC_RMAP_ONE_OFF": ("rmap_walk_control", "rmap_one"),
    "AVC_SAME_VMA_OFF": ("anon_vma_chain", "same_vma"), "AVC_ANON_VMA_OFF": ("anon_vma_chain", "anon_vma"),
    "ANON_VMA_NUM_CHILDREN_OFF": ("anon_vma", "num_children"),
    "ANON_VMA_NUM_ACTIVE_VMAS_OFF": ("anon_vma", "num_active_vmas"),
}
SIZES = {"anon_vma": "anon_vma", "anon_vma_chain": "anon_vma_chain", "vm_area_struct": "vm_area_struct"}
INCLUDES = ("linux/sched.h", "linux/mm_types.h", "linux/rmap.h", "linux/fdtable.h", "linux/fs.h")


def facts_defines(facts):
    """Offsets (define -> value) the collector read, and sizes (struct -> value)."""
    d = {"TASK_PID_OFF": facts.task_offsets["pid"], "TASK_TGID_OFF": facts.task_offsets["tgid"],
         "TASK_MM_OFF": facts.task_offsets["mm"], "TASK_COMM_OFF": facts.task_offsets["comm"],
         "MM_OWNER_OFF": facts.mm_owner_off, "ANON_VMA_ROOT_OFF": facts.anon_vma_offsets["root"],
         "ANON_VMA_RWSEM_OFF": facts.anon_vma_offsets["rwsem"], **facts.uffd_offsets,
         **(facts.fprobe_offsets or {}), **(facts.census_offsets or {})}
    return {k: v for k, v in d.items() if k in OFFSETS and v >= 0}, dict(facts.sizes)


def assertions(offsets, sizes):
    out = [f"#include <{h}>" for h in INCLUDES]
    for define, value in sorted(offsets.items()):
        struct, member = OFFSETS[define]
        out.append(f'_Static_assert(__builtin_offsetof(struct {struct}, {member}) == {value}, '
                   f'"{define}: {struct}.{member} is not at {value} in the headers");')
    for obj, value in sorted(sizes.items()):
        out.append(f'_Static_assert(sizeof(struct {SIZES[obj]}) == {value}, '
                   f'"sizeof(struct {obj}) is not {value} in the headers");')
    out.append("int anonscope_offsets(void *ctx) { return 0; }")
    return "\n".join(out) + "\n"


def test_btf_offsets_equal_the_headers(tmp_path):
    choice = headers.choose()
    if not choice.matching:
        pytest.skip(f"host lacks: headers of the running kernel ({choice.how})")
    prep = probes.prepare(RunConfig(output=str(tmp_path / "x.parquet"), system_wide=True))
    offsets, sizes = facts_defines(prep.facts)
    assert {"TASK_PID_OFF", "VMA_START_OFF", "ANON_VMA_ROOT_OFF"} <= set(offsets)
    headers.apply(choice)
    from bcc import BPF
    src = assertions(offsets, sizes)
    try:
        BPF(text=src, cflags=headers.cflags(headers.tree_release(choice)))
    except Exception as e:  # noqa: BLE001 - bcc raises plain Exception with clang's words on stderr
        pytest.fail(f"the headers disagree with BTF (see the static assertion above): {e}\n{src}")
