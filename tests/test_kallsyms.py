import pytest

from anonscope.collector.kallsyms import KallsymsError, base_name, function_ranges

LINES = """\
ffffffff81600200 t __pfx_anon_vma_ctor
ffffffff81600210 t anon_vma_ctor
ffffffff816043d0 T __pfx___anon_vma_prepare
ffffffff816043e0 T __anon_vma_prepare
ffffffff816045c0 T __pfx_unlink_anon_vmas
ffffffff816045d0 T unlink_anon_vmas.isra.0
ffffffff816047b0 T __pfx_anon_vma_clone
ffffffff816047c0 T anon_vma_clone
ffffffff816047c0 T anon_vma_clone_alias
ffffffff81604900 t anon_vma_clone.cold
ffffffff81604950 d some_data
ffffffff816049b0 T anon_vma_fork.llvm.12345678901234
ffffffff81604b30 T __pfx_folio_get_anon_vma
ffffffffc0001000 t modfunc	[somemodule]
""".splitlines()


def test_base_name_strips_compiler_suffixes():
    assert base_name("unlink_anon_vmas.isra.0") == "unlink_anon_vmas"
    assert base_name("anon_vma_fork.llvm.12345678901234") == "anon_vma_fork"
    assert base_name("foo.constprop.0.isra.0") == "foo"
    assert base_name("foo.part.3") == "foo"
    assert base_name("foo.cold") == "foo"
    assert base_name("__anon_vma_prepare") == "__anon_vma_prepare"


def test_ranges_end_at_the_next_symbol():
    r = function_ranges(LINES, ["__anon_vma_prepare", "unlink_anon_vmas", "anon_vma_clone", "anon_vma_fork"])
    assert r["__anon_vma_prepare"] == [(0xFFFFFFFF816043E0, 0xFFFFFFFF816045C0)]
    assert r["unlink_anon_vmas"] == [(0xFFFFFFFF816045D0, 0xFFFFFFFF816047B0)]
    # an alias at the same address does not end the function; .cold is a second range
    assert r["anon_vma_clone"] == [(0xFFFFFFFF816047C0, 0xFFFFFFFF81604900),
                                   (0xFFFFFFFF81604900, 0xFFFFFFFF816049B0)]
    # data symbols do not end functions
    assert r["anon_vma_fork"] == [(0xFFFFFFFF816049B0, 0xFFFFFFFF81604B30)]


def test_missing_and_module_functions_are_absent():
    r = function_ranges(LINES, ["modfunc", "no_such_function"])
    assert r == {}


def test_zero_addresses_mean_not_root():
    hidden = [("0000000000000000" + line[16:]) for line in LINES]
    with pytest.raises(KallsymsError, match="root"):
        function_ranges(hidden, ["anon_vma_clone"])
