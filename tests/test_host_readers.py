"""headers.py, slab.py and program.py against made-up host trees."""

import os

import pytest

from anonscope.collector import headers, program, sites, slab


def _tree(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_split_debian_headers_are_overlaid_in_a_private_dir(tmp_path, monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")  # the trees below are -amd64
    common = tmp_path / "usr/src/linux-headers-6.1.0-9-common"
    arch = tmp_path / "usr/src/linux-headers-6.1.0-9-amd64"
    _tree(common, {"include/linux/kconfig.h": "k", "include/linux/types.h": "t",
                   "arch/x86/include/asm/ptrace.h": "p"})
    _tree(arch, {"include/generated/autoconf.h": "a", "arch/x86/include/generated/asm/x.h": "g",
                 "Makefile": f"include {common}/Makefile\n"})
    old = tmp_path / "usr/src/linux-headers-5.10.0-1-amd64"
    _tree(old, {"include/generated/autoconf.h": "old"})
    choice = headers.choose(release="6.18.0-test", env={}, root=str(tmp_path))
    assert choice.path == str(arch), "newest tree of this arch"
    assert not choice.matching and "BTF" in choice.how
    merged = headers.merged_tree(choice.path)
    assert merged != str(arch) and not merged.startswith(str(tmp_path))
    for rel in ("include/linux/kconfig.h", "include/generated/autoconf.h",
                "arch/x86/include/asm/ptrace.h", "arch/x86/include/generated/asm/x.h", "Makefile"):
        assert os.path.isfile(os.path.join(merged, rel)), rel
    assert sorted(os.listdir(tmp_path / "usr/src")) == sorted(
        ["linux-headers-6.1.0-9-common", "linux-headers-6.1.0-9-amd64", "linux-headers-5.10.0-1-amd64"]), \
        "system tree untouched"


def test_matching_headers_and_env_win(tmp_path):
    _tree(tmp_path / "lib/modules/6.18.0-test/build", {"include/generated/autoconf.h": "a"})
    assert headers.choose(release="6.18.0-test", env={}, root=str(tmp_path)).matching
    c = headers.choose(release="6.18.0-test", env={"BCC_KERNEL_SOURCE": "/x"}, root=str(tmp_path))
    assert c.path == "/x"


def test_no_headers_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    with pytest.raises(headers.HeadersError, match="linux-headers"):
        headers.choose(release="6.18.0-test", env={}, root=str(tmp_path))


SLABINFO = """slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
vm_area_struct       664   1155    192   21    1 : tunables    0    0    0 : slabdata     55     55      0
anon_vma_chain       465    640     64   64    1 : tunables    0    0    0 : slabdata     10     10      0
anon_vma             314    351    104   39    1 : tunables    0    0    0 : slabdata      9      9      0
anon_vma_chainx        1      1     64   64    1 : tunables    0    0    0 : slabdata      1      1      0
"""


def test_parse_slabinfo():
    lines = slab.parse_slabinfo(SLABINFO)
    assert set(lines) == {"vm_area_struct", "anon_vma_chain", "anon_vma"}
    assert lines["anon_vma"].active == 314 and lines["anon_vma"].total == 351 and lines["anon_vma"].objsize == 104


def test_aliases_from_sysfs_symlinks(tmp_path):
    (tmp_path / ":A-0000064").mkdir()
    (tmp_path / "anon_vma").mkdir()
    (tmp_path / ":A-0000128").mkdir()
    for name in ("anon_vma_chain", "fs_cache", "eventpoll_pwq"):
        (tmp_path / name).symlink_to(tmp_path / ":A-0000064")
    (tmp_path / "other").symlink_to(tmp_path / ":A-0000128")
    assert slab.aliases("anon_vma_chain", str(tmp_path)) == ["eventpoll_pwq", "fs_cache"]
    assert slab.aliases("anon_vma", str(tmp_path)) == []
    assert slab.aliases("vm_area_struct", str(tmp_path)) == []


FORMAT = """name: kmem_cache_free
ID: 658
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned long call_site;\toffset:8;\tsize:8;\tsigned:0;
\tfield:const void * ptr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:24;\tsize:4;\tsigned:0;
\tfield:char comm[16];\toffset:28;\tsize:16;\tsigned:0;

print fmt: "call_site=%pS ptr=%p name=%s", REC->call_site
"""


def test_tracepoint_format_fields():
    assert program.parse_format_fields(FORMAT) == ["common_type", "call_site", "ptr", "name", "comm"]


def test_program_takes_layouts_from_facts_not_headers():
    """A 5.10-like kernel: kmem_cache_alloc passes sizes, kmem_cache_free
    neither cache nor name; all layouts come from the facts."""
    layout = program.kmem_arg_layout(
        ["long unsigned int", "const void *", "size_t", "size_t", "gfp_t"],
        ["long unsigned int", "const void *"])
    assert layout["KA_BYTES_REQ"] == 2 and layout["KA_BYTES_ALLOC"] == 3
    assert layout["KA_CACHE"] == -1 and layout["KF_CACHE"] == -1 and layout["KF_NAME"] == -1
    facts = program.KernelFacts(
        sizes={"anon_vma": 88, "anon_vma_chain": 48, "vm_area_struct": 176},
        task_offsets={"pid": 1000, "tgid": 1004, "mm": 900, "comm": 1500}, kmem_args=layout,
        kmem_cache_offsets={"object_size": 20, "size": 24}, exit_has_group_dead=False, fork_syscalls=[],
        exec_syscalls=[], task_rename=False, merged={"anon_vma_chain": True},
        free_names={"anon_vma": "anon_vma", "anon_vma_chain": "fs_cache", "vm_area_struct": "vm_area_struct"},
        anon_vma_offsets={"root": 0, "rwsem": 8}, lock_contention=False, release="5.10.0-x", arch="aarch64")
    src = program.build(facts, sites.placeholder(), program.Options(tracked=True, comm="a\"b"))
    for line in ("#define ANON_VMA_SIZE 88", "#define AVC_SIZE 48", "#define TASK_TGID_OFF 1004",
                 "#define KA_CACHE -1", "#define KA_BYTES_REQ 2", "#define KF_NAME -1",
                 "#define HAVE_FORK_SYSCALLS 0", "#define HAVE_EXEC_SYSCALLS 0", "#define MERGED_AVC 1",
                 "#define HAVE_LOCK_CONTENTION 0",
                 "#define TARGET_TRACKED 1", '#define COMM_FILTER "a\\x22b"'):
        assert line in src
    assert "u8 alloc_site(u64 ip)" in src and "RAW_TRACEPOINT_PROBE(kmem_cache_alloc)" in src
    assert "sys_enter_clone" not in src.split("#define FORK_SYSCALL_PROBES", 1)[1].split("\n", 1)[0]
    # frees into a merged cache are reported under the group's first name
    matcher = src.split("u8 object_by_name(const char *n)", 1)[1].split("return 0;", 1)[0]
    fs = " && ".join(f"n[{i}] == {c}" for i, c in enumerate(b"fs_cache\0"))
    assert fs + ")  // fs_cache\n        return OBJ_AVC;" in matcher


def test_kmem_layout_of_5_12_and_6_x():
    mid = program.kmem_arg_layout(["long unsigned int", "const void *", "size_t", "size_t", "gfp_t"],
                                  ["long unsigned int", "const void *", "const char *"])
    assert mid["KF_NAME"] == 2 and mid["KF_CACHE"] == -1
    new = program.kmem_arg_layout(["long unsigned int", "const void *", "struct kmem_cache *", "gfp_t", "int"],
                                  ["long unsigned int", "const void *", "const struct kmem_cache *"])
    assert (new["KA_CACHE"], new["KF_CACHE"], new["KA_BYTES_REQ"]) == (2, 2, -1)
    with pytest.raises(program.LayoutError):
        program.kmem_arg_layout(None, None)
    with pytest.raises(program.LayoutError):
        program.kmem_arg_layout(["int"], ["int"])

def test_reported_name_of_a_merged_cache():
    lines = slab.parse_slabinfo(SLABINFO.replace("anon_vma_chain  ", "fs_cache        "), caches=None)
    assert slab.reported_name("anon_vma_chain", ["fs_cache", "eventpoll_pwq"], lines) == "fs_cache"
    assert slab.reported_name("anon_vma", [], lines) == "anon_vma"


def test_fork_syscall_probes_are_generated():
    facts = program.KernelFacts.example()
    src = program.build(facts, sites.placeholder(), program.Options())
    probes = src.split("#define FORK_SYSCALL_PROBES", 1)[1].split("#include", 1)[0]
    for s in ("clone", "clone3", "fork", "vfork"):
        assert f"TRACEPOINT_PROBE(syscalls, sys_enter_{s})" in probes
        assert f"TRACEPOINT_PROBE(syscalls, sys_exit_{s})" in probes


def test_ebpf_says_when_its_facts_are_not_this_kernels():
    """--ebpf without root builds from an example kernel's facts and made-up
    call-site ranges; the program's header says so (and only then)."""
    src = program.build(program.KernelFacts.example(), sites.placeholder(), program.Options())
    head = src.split("#define", 1)[0]
    assert "EXAMPLE FACTS" in head and "PLACEHOLDER CALL SITES" in head
    real = sites.Classifier.from_ranges({n: [(0x1000, 0x1100)] for n in sites.wanted_functions()})
    head = program.build(program.KernelFacts.example(), real, program.Options()).split("#define", 1)[0]
    assert "PLACEHOLDER" not in head and "EXAMPLE FACTS" in head
    facts = program.KernelFacts(**{**program.KernelFacts.example().__dict__, "is_example": False})
    assert "EXAMPLE" not in program.build(facts, real, program.Options()).split("#define", 1)[0]
