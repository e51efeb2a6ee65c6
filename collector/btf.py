"""Struct sizes and member offsets from the kernel's BTF.

Every kernel struct layout anoncollect uses comes from here (or from the
tracepoint format files), never from a headers tree: the headers bcc
compiles against may belong to another kernel version.

Covers the BTF format of Documentation/bpf/btf.rst as emitted by kernels 5.2
and later (kinds 1-19); /sys/kernel/btf/vmlinux exists when the kernel was
built with CONFIG_DEBUG_INFO_BTF.
"""

import struct

VMLINUX = "/sys/kernel/btf/vmlinux"

_MAGIC = 0xEB9F
_STRUCT, _UNION = 4, 5
# Bytes that follow the 12-byte btf_type for each kind, as a function of vlen.
_EXTRA = {
    1: lambda v: 4,        # INT
    3: lambda v: 12,       # ARRAY
    4: lambda v: 12 * v,   # STRUCT
    5: lambda v: 12 * v,   # UNION
    6: lambda v: 8 * v,    # ENUM
    13: lambda v: 8 * v,   # FUNC_PROTO
    14: lambda v: 4,       # VAR
    15: lambda v: 12 * v,  # DATASEC
    17: lambda v: 4,       # DECL_TAG
    19: lambda v: 12 * v,  # ENUM64
}


class BTFError(Exception):
    """The BTF blob is missing, malformed, or lacks a struct or member."""


class BTF:
    """Named structs of one BTF blob: ``sizeof`` and ``offsetof``."""

    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, _str_len = \
            struct.unpack_from("<HBBIIIII", data, 0)
        if magic != _MAGIC:
            raise BTFError("not a BTF blob (bad magic)")
        self._data = data
        self._strings = hdr_len + str_off
        # struct name -> (size, vlen, kflag, offset of its members)
        self._structs = {}
        p, end = hdr_len + type_off, hdr_len + type_off + type_len
        while p < end:
            name_off, info, size = struct.unpack_from("<III", data, p)
            p += 12
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            if kind in (_STRUCT, _UNION) and name_off:
                # The first definition wins; BTF has each named struct once.
                self._structs.setdefault(self._str(name_off), (size, vlen, kflag, p))
            extra = _EXTRA.get(kind)
            p += extra(vlen) if extra else 0

    @classmethod
    def from_file(cls, path: str = VMLINUX) -> "BTF":
        try:
            with open(path, "rb") as f:
                return cls(f.read())
        except OSError as e:
            raise BTFError(f"cannot read {path}: {e.strerror}") from None

    def _str(self, off: int) -> str:
        start = self._strings + off
        return self._data[start:self._data.index(b"\0", start)].decode()

    def sizeof(self, name: str) -> int:
        """``sizeof(struct name)``."""
        try:
            return self._structs[name][0]
        except KeyError:
            raise BTFError(f"struct {name} not in BTF") from None

    def offsetof(self, name: str, member: str) -> int:
        """Byte offset of ``member`` in ``struct name``.

        Only direct members are found (not members of anonymous inner
        structs or unions), which is all the collector needs.
        """
        try:
            _size, vlen, kflag, p = self._structs[name]
        except KeyError:
            raise BTFError(f"struct {name} not in BTF") from None
        for i in range(vlen):
            m_name, _m_type, m_off = struct.unpack_from("<III", self._data, p + 12 * i)
            if m_name and self._str(m_name) == member:
                bits = (m_off & 0xFFFFFF) if kflag else m_off
                return bits // 8
        raise BTFError(f"struct {name} has no member {member}")
