"""Struct sizes and member offsets from the kernel's BTF.

Every kernel struct layout anoncollect uses comes from here (or from the
tracepoint format files), never from a headers tree: the headers bcc
compiles against may belong to another kernel version.

Covers the BTF format of Documentation/bpf/btf.rst as emitted by kernels 5.2
and later (kinds 1-19); /sys/kernel/btf/vmlinux exists when the kernel was
built with CONFIG_DEBUG_INFO_BTF.
"""

import struct
from typing import List, Optional, Set

VMLINUX = "/sys/kernel/btf/vmlinux"

_MAGIC = 0xEB9F
_STRUCT, _UNION = 4, 5
_PTR, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _FUNC, _FUNC_PROTO = 2, 8, 9, 10, 11, 12, 13
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
        # type id -> (kind, name_off, size_or_type, vlen, payload offset); id 0 is void
        self._types = [(0, 0, 0, 0, 0)]
        self._typedefs = {}
        p, end = hdr_len + type_off, hdr_len + type_off + type_len
        while p < end:
            name_off, info, size = struct.unpack_from("<III", data, p)
            p += 12
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            self._types.append((kind, name_off, size, vlen, p))
            if kind in (_STRUCT, _UNION) and name_off:
                # The first definition wins; BTF has each named struct once.
                self._structs.setdefault(self._str(name_off), (size, vlen, kflag, p))
            elif kind == _TYPEDEF and name_off:
                self._typedefs.setdefault(self._str(name_off), len(self._types) - 1)
            extra = _EXTRA.get(kind)
            p += extra(vlen) if extra else 0

    @classmethod
    def from_file(cls, path: str = VMLINUX) -> "BTF":
        """The BTF read from ``path`` (the running kernel's, by default);
        BTFError when it cannot be read."""
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

        Members of anonymous inner structs and unions are found too (struct
        page and struct folio keep most fields in them); the first match in
        declaration order wins.
        """
        try:
            _size, vlen, kflag, p = self._structs[name]
        except KeyError:
            raise BTFError(f"struct {name} not in BTF") from None
        found = self._find_member(vlen, kflag, p, member)
        if found is None:
            raise BTFError(f"struct {name} has no member {member}")
        return found

    def members(self, name: str) -> List[str]:
        """The member names of ``struct name`` in declaration order, those of
        anonymous inner structs and unions in their place (as
        :meth:`offsetof` finds them)."""
        try:
            _size, vlen, kflag, p = self._structs[name]
        except KeyError:
            raise BTFError(f"struct {name} not in BTF") from None
        return self._member_names(vlen, p)

    def _member_names(self, vlen: int, p: int) -> List[str]:
        out = []
        for i in range(vlen):
            m_name, m_type, _off = struct.unpack_from("<III", self._data, p + 12 * i)
            if m_name:
                out.append(self._str(m_name))
                continue
            kind, _n, _size, sub_vlen, sub_p = self._types[self._resolve(m_type)]
            if kind in (_STRUCT, _UNION):
                out += self._member_names(sub_vlen, sub_p)
        return out

    def funcs(self, names) -> Set[str]:
        """Those of ``names`` that BTF describes as functions (one pass over
        the types; :meth:`has_func` for one name)."""
        wanted = set(names)
        return {self._str(name_off) for kind, name_off, _size, _vlen, _p in self._types
                if kind == _FUNC and name_off and self._str(name_off) in wanted}

    def _find_member(self, vlen: int, kflag: int, p: int, member: str):
        for i in range(vlen):
            m_name, m_type, m_off = struct.unpack_from("<III", self._data, p + 12 * i)
            bits = (m_off & 0xFFFFFF) if kflag else m_off
            if m_name and self._str(m_name) == member:
                return bits // 8
            if not m_name:  # anonymous struct or union: look inside
                t = self._resolve(m_type)
                kind, _n, _size, sub_vlen, sub_p = self._types[t]
                if kind in (_STRUCT, _UNION):
                    sub_kflag = (struct.unpack_from("<I", self._data, sub_p - 8)[0]) >> 31
                    inner = self._find_member(sub_vlen, sub_kflag, sub_p, member)
                    if inner is not None:
                        return bits // 8 + inner
        return None

    def _resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers."""
        while self._types[type_id][0] in (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT):
            type_id = self._types[type_id][2]
        return type_id

    def has_func(self, name: str) -> bool:
        """Whether BTF describes function ``name`` (a FUNC type). pahole
        emits one for every function the kernel keeps out of line with a
        consistent prototype, static ones included; fentry/fexit can attach
        only to those."""
        return any(kind == _FUNC and name_off and self._str(name_off) == name
                   for kind, name_off, _size, _vlen, _p in self._types)

    def enumerator(self, name: str, enum: Optional[str] = None) -> int:
        """Value of enumerator ``name``: in ``enum enum`` (e.g. pageflags),
        or in whichever enum declares it, named or not (the kernel's
        anonymous enums, e.g. MM_ANONPAGES)."""
        for kind, name_off, _size, vlen, p in self._types:
            if kind != 6 or (enum is not None and not (name_off and self._str(name_off) == enum)):
                continue
            for i in range(vlen):
                e_name, e_val = struct.unpack_from("<Ii", self._data, p + 8 * i)
                if self._str(e_name) == name:
                    return e_val
        raise BTFError(f"enum {enum} has no {name}" if enum else f"no enumerator {name}")

    def type_name(self, type_id: int) -> str:
        """C spelling of a type, e.g. ``const struct kmem_cache *``."""
        kind, name_off, ref, _vlen, _p = self._types[type_id]
        if type_id == 0:
            return "void"
        if kind == _PTR:
            return self.type_name(ref) + " *"
        if kind == _CONST:
            return "const " + self.type_name(ref)
        if kind in (_VOLATILE, _RESTRICT):
            return self.type_name(ref)
        name = self._str(name_off) if name_off else ""
        return {_STRUCT: "struct ", _UNION: "union ", 6: "enum "}.get(kind, "") + name

    def raw_tracepoint_args(self, event: str):
        """Types of a raw tracepoint's arguments (ctx->args[0], [1], ...).

        The kernel declares ``typedef void (*btf_trace_<event>)(void *__data,
        TP_PROTO...)`` for every tracepoint (since 5.5, with BTF); the
        arguments a raw tracepoint program sees are TP_PROTO's, so the
        leading ``__data`` is dropped. BTF keeps their types, not always
        their names. None when the kernel has no such typedef.
        """
        tid = self._typedefs.get("btf_trace_" + event)
        if tid is None:
            return None
        kind, _n, ref, _v, _p = self._types[tid]
        ptr = self._types[ref]
        if ptr[0] != _PTR or self._types[ptr[2]][0] != _FUNC_PROTO:
            return None
        _k, _n, _ret, vlen, p = self._types[ptr[2]]
        params = [struct.unpack_from("<II", self._data, p + 8 * i)[1] for i in range(vlen)]
        return [self.type_name(t) for t in params[1:]]
