"""A minimal BTF blob builder for the tests that read BTF."""

import struct


def make_btf(structs, funcs=(), enums=None):
    """A minimal BTF blob: one INT type, the given structs
    {name: (size, [(member, bit_offset)])}, members typed INT, FUNC types
    named ``funcs`` (their prototype left as the INT: has_func reads names
    only) and enums {name: {enumerator: value}}."""
    strings = b"\0"
    def s(name):
        nonlocal strings
        off = len(strings)
        strings += name.encode() + b"\0"
        return off
    types = struct.pack("<III", s("int"), 1 << 24, 4) + struct.pack("<I", 32)  # INT, 4 bytes
    for name, (size, members) in structs.items():
        types += struct.pack("<III", s(name), (4 << 24) | len(members), size)
        for m, bits in members:
            types += struct.pack("<III", s(m), 1, bits)
    for name in funcs:
        types += struct.pack("<III", s(name), 12 << 24, 1)
    for name, values in (enums or {}).items():
        types += struct.pack("<III", s(name), (6 << 24) | len(values), 4)
        for v_name, v in values.items():
            types += struct.pack("<Ii", s(v_name), v)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings
