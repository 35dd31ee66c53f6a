"""What runtime a process is, from what it runs and maps, not from its name: a stack is read
the way its runtime allows (py-spy for CPython, Go's pprof, Node's inspector, a native
unwinder for everything else), and a process name proves nothing (a `python3` can be a
pyenv shell shim, a `server` a Go binary).

Evidence, read from /proc/PID/exe and the ELF files /proc/PID/maps maps executable:
- Go: the executable has a `.go.buildinfo` section (every Go >= 1.13 binary; -ldflags=-s
  keeps it);
- CPython: a mapped file defines `Py_Initialize` in its dynamic symbols (the interpreter
  itself, or libpython for a shared build or a program that embeds Python);
- Node: a mapped file defines `node_module_register` (what native addons link against:
  the `node` executable, or Debian's libnode).

A minimal ELF reader (section headers, .dynstr, .dynsym) rather than pyelftools: it needs
three tables, and reading them costs 0.1-20 ms per process (node's 5 MB .dynstr the most).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO


class Kind(StrEnum):
    PYTHON = "python"
    GO = "go"
    NODE = "node"
    NATIVE = "native"  # an ELF program of no runtime known here: C, C++, Rust...
    UNKNOWN = "unknown"  # its executable could not be read


@dataclass(frozen=True)
class Runtime:
    kind: Kind
    evidence: str  # one line: what showed it
    exe: str | None  # /proc/PID/exe's target


_SYMBOLS = {Kind.PYTHON: b"Py_Initialize", Kind.NODE: b"node_module_register"}


@dataclass(frozen=True)
class _Elf:
    sections: dict[bytes, tuple[int, int, int]]  # name -> (offset, size, entry size)
    is64: bool
    little: bool


def _read_elf(f: BinaryIO) -> _Elf | None:
    """The section table of an ELF file open for binary reading, None if not ELF."""
    head = f.read(64)
    if len(head) < 52 or head[:4] != b"\x7fELF":
        return None
    is64, little = head[4] == 2, head[5] == 1
    e = "<" if little else ">"
    if is64:
        shoff, shentsize, shnum, shstrndx = struct.unpack_from(e + "Q10xHHH", head, 0x28)
    else:
        shoff, shentsize, shnum, shstrndx = struct.unpack_from(e + "I10xHHH", head, 0x20)
    if not shoff or not shnum or shstrndx >= shnum or shnum > 65535:
        return None
    f.seek(shoff)
    table = f.read(shentsize * shnum)
    # sh_name, sh_addr, sh_offset, sh_size, sh_entsize (the others skipped)
    fmt = e + ("I4x8xQQQ8x8xQ" if is64 else "I4x4xIII8x4xI")
    raw = []
    for i in range(shnum):
        if (i + 1) * shentsize > len(table):
            return None
        name, _, off, size, ent = struct.unpack_from(fmt, table, i * shentsize)
        raw.append((name, off, size, ent))
    _, stroff, strsize, _ = raw[shstrndx]
    f.seek(stroff)
    names = f.read(strsize)
    sections = {}
    for name, off, size, ent in raw:
        end = names.find(b"\0", name)
        sections[names[name:end]] = (off, size, ent)
    return _Elf(sections, is64, little)


def defined(path: str, symbols: tuple[bytes, ...]) -> set[bytes]:
    """Which of `symbols` the ELF file at `path` defines among its dynamic symbols."""
    out: set[bytes] = set()
    try:
        with open(path, "rb") as f:
            elf = _read_elf(f)
            if elf is None or b".dynstr" not in elf.sections or b".dynsym" not in elf.sections:
                return out
            off, size, _ = elf.sections[b".dynstr"]
            f.seek(off)
            strings = f.read(size)
            wanted = {}
            for symbol in symbols:
                at = strings.find(b"\0" + symbol + b"\0")
                if at >= 0:
                    wanted[symbol] = at + 1  # its st_name
            if not wanted:
                return out
            off, size, ent = elf.sections[b".dynsym"]
            f.seek(off)
            syms = f.read(size)
    except OSError:
        return out
    e = "<" if elf.little else ">"
    # st_name, then st_shndx (0: undefined, an import) at 6 (64-bit) or 14 (32-bit)
    shndx_at = 6 if elf.is64 else 14
    ent = ent or (24 if elf.is64 else 16)
    for symbol, name_off in wanted.items():
        key = struct.pack(e + "I", name_off)
        at = syms.find(key)
        while at >= 0 and at % ent:  # a match inside another field: look further
            at = syms.find(key, at + 1)
        if at >= 0 and struct.unpack_from(e + "H", syms, at + shndx_at)[0] != 0:
            out.add(symbol)
    return out


def has_section(path: str, name: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            elf = _read_elf(f)
    except OSError:
        return False
    return elf is not None and name in elf.sections


def mapped_files(pid: int) -> list[str]:
    """The files a process maps executable, in the order of its maps (the program first)."""
    out: list[str] = []
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            data = f.read()
    except OSError:
        return out
    for line in data.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and b"x" in parts[1] and parts[5].startswith(b"/"):
            path = parts[5].decode(errors="replace").removesuffix(" (deleted)")
            if path not in out:
                out.append(path)
    return out


def detect(pid: int) -> Runtime:
    """The runtime of process `pid`, with the evidence; UNKNOWN when /proc/PID/exe cannot
    be read (gone, or not ours to inspect)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except FileNotFoundError:
        return Runtime(Kind.UNKNOWN, f"no process {pid}", None)
    except PermissionError:
        return Runtime(Kind.UNKNOWN, f"/proc/{pid}/exe is not readable (not permitted)", None)
    except OSError as e:
        return Runtime(Kind.UNKNOWN, f"/proc/{pid}/exe: {e.strerror}", None)
    # read through /proc/PID/exe, not the path: the file may be deleted or in another mount
    # namespace; likewise /proc/PID/map_files would need CAP_SYS_ADMIN, so libraries are
    # read by path
    own = f"/proc/{pid}/exe"
    if has_section(own, b".go.buildinfo"):
        return Runtime(Kind.GO, "its executable has a .go.buildinfo section", exe)
    files = mapped_files(pid)
    candidates = [own] + [p for p in files if p != exe]
    symbols = tuple(_SYMBOLS.values())
    for path in candidates:
        found = defined(path, symbols)
        for kind, symbol in _SYMBOLS.items():
            if symbol in found:
                what = "its executable" if path == own else os.path.basename(path)
                return Runtime(kind, f"{what} defines {symbol.decode()}", exe)
    return Runtime(Kind.NATIVE, "no Go build info, Python or Node symbols", exe)
