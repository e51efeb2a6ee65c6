import re

from anonscope.collector import abi
from anonscope.collector.sites import Classifier

RANGES = {
    "__anon_vma_prepare": [(0x1000, 0x1100)],
    "anon_vma_fork": [(0x2000, 0x2100)],
    "anon_vma_clone": [(0x3000, 0x3100), (0x9000, 0x9040)],  # with a .cold part
    "unlink_anon_vmas": [(0x4000, 0x4100)],
    "__put_anon_vma": [(0x5000, 0x5100)],
    "vm_area_dup": [(0x6000, 0x6100)],
    "__split_vma": [(0x7000, 0x7100)],
    "copy_vma": [(0x8000, 0x8100)],
}


def test_alloc_sites_by_range():
    c = Classifier.from_ranges(RANGES)
    assert c.alloc_site(0x1000) == abi.Site.PREPARE
    assert c.alloc_site(0x10FF) == abi.Site.PREPARE
    assert c.alloc_site(0x1100) == 0  # end is exclusive
    assert c.alloc_site(0x2050) == abi.Site.FORK
    assert c.alloc_site(0x9010) == abi.Site.CLONE  # the cold part too
    assert c.alloc_site(0x6010) == abi.Site.VMA_DUP
    assert c.alloc_site(0x4010) == 0  # a free function is not an alloc site


def test_free_and_caller_sites():
    c = Classifier.from_ranges(RANGES)
    assert c.free_site(0x4010) == abi.Site.UNLINK
    assert c.free_site(0x5010) == abi.Site.PUT
    assert c.free_site(0x2010) == abi.Site.FORK  # error path
    assert c.caller_site(0x7010) == abi.Caller.SPLIT
    assert c.caller_site(0x8010) == abi.Caller.MREMAP
    assert c.caller_site(0x2010) == abi.Caller.FORK
    assert c.caller_site(0x1010) == 0


def test_missing_functions_are_listed():
    c = Classifier.from_ranges(RANGES)
    assert "vm_area_alloc" in c.missing
    assert "anon_vma_clone" not in c.missing


def _eval_c(src: str, fn: str, ip: int) -> int:
    """Run a generated C classifier on ip by reading its range compares."""
    body = src.split(f"u8 {fn}(u64 ip)", 1)[1].split("    return 0;\n}", 1)[0]
    bounds = re.search(r"if \(ip < 0x([0-9a-f]+)ULL \|\| ip >= 0x([0-9a-f]+)ULL\) return 0;", body)
    if bounds and not int(bounds.group(1), 16) <= ip < int(bounds.group(2), 16):
        return 0
    for lo, hi, tag in re.findall(r"ip >= 0x([0-9a-f]+)ULL && ip < 0x([0-9a-f]+)ULL\) return (\d+);", body):
        if int(lo, 16) <= ip < int(hi, 16):
            return int(tag)
    return 0


def test_generated_c_agrees_with_python():
    c = Classifier.from_ranges(RANGES)
    src = c.c_functions()
    for ip in range(0x0F00, 0x9100, 0x10):
        assert _eval_c(src, "alloc_site", ip) == c.alloc_site(ip)
        assert _eval_c(src, "free_site", ip) == c.free_site(ip)
        assert _eval_c(src, "caller_site", ip) == c.caller_site(ip)


def test_describe_names_paths_without_addresses():
    d = Classifier.from_ranges(RANGES).describe()
    assert d["anon_vma_fork"] == "alloc:fork,free:fork,caller:fork,lock:fork"
    assert d["__split_vma"] == "caller:split,lock:split_merge"
    assert not any(re.search(r"0x|\d{6,}", v) for v in d.values())
