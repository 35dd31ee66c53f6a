"""Steering a reuseport group: which of the group's sockets the kernel gives a connection.

- `hash` (the kernel's default): a hash of the 4-tuple; even counts, blind to load.
- `cbpf-cpu`: a classic BPF program attached with SO_ATTACH_REUSEPORT_CBPF returns the
  CPU that received the SYN, modulo the group's size: socket i gets CPU i's connections
  (on loopback, the CPU the client sends from).
- `cbpf-rr`: refused: a classic BPF program has no state that outlives one packet (no
  maps; its scratch memory M[] is cleared for each run), so it cannot count.
- `ebpf-rr`: round robin by a counter: an eBPF socket filter (SO_ATTACH_REUSEPORT_EBPF)
  adds 1 to an array map's one element with an atomic fetch-add and returns the old
  value modulo the group's size. Hand-assembled (14 instructions, loaded with the bpf(2)
  syscall through ctypes): no library on PyPI loads one without a compiler toolchain.
- SO_INCOMING_CPU on socket i: the kernel (6.2+) prefers, within the group, the socket
  whose CPU received the connection; its worker pins itself to that CPU.

A program returns an index into the group, in the order its sockets joined (the
supervisor binds them in slot order); an index out of range falls back to the hash.
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket
import struct

from .config import ConfigError

SO_INCOMING_CPU = getattr(socket, "SO_INCOMING_CPU", 49)
SO_ATTACH_REUSEPORT_CBPF = 51
SO_ATTACH_REUSEPORT_EBPF = 52
SKF_AD_CPU = -0x1000 + 36  # SKF_AD_OFF + SKF_AD_CPU: the receiving CPU, in classic BPF

STEERS = ("hash", "cbpf-cpu", "cbpf-rr", "ebpf-rr")
NO_CBPF_RR = (
    "--steer cbpf-rr: a classic BPF program keeps no state between connections (no maps; "
    "its scratch memory is cleared for each packet), so it cannot count; use --steer ebpf-rr"
)


def check(steer: str) -> None:
    if steer == "cbpf-rr":
        raise ConfigError(NO_CBPF_RR)


def attach(steer: str, group: list[socket.socket]) -> None:
    """Attach `steer`'s program to the group (any one socket of it carries it)."""
    if steer == "hash" or len(group) < 2:
        return
    if steer == "cbpf-cpu":
        _attach_cbpf(group[0], _cpu_program(len(group)))
    elif steer == "ebpf-rr":
        fd = _rr_program(len(group))
        try:
            group[0].setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, fd)
        finally:
            os.close(fd)  # the group holds the program, the program its map
    else:
        check(steer)
        raise ConfigError(f"unknown --steer {steer!r}; choose one of: {', '.join(STEERS)}")


def prefer_cpus(group: list[socket.socket]) -> list[int]:
    """SO_INCOMING_CPU: socket i prefers the connections CPU i % cpus receives; the CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    chosen = [cpus[i % len(cpus)] for i in range(len(group))]
    for sock, cpu in zip(group, chosen, strict=True):
        sock.setsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU, cpu)
    return chosen


# -- classic BPF -----------------------------------------------------------------------
_SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k


def _cpu_program(n: int) -> bytes:
    ld_cpu = _SOCK_FILTER.pack(0x20, 0, 0, SKF_AD_CPU & 0xFFFFFFFF)  # BPF_LD|BPF_W|BPF_ABS
    mod_n = _SOCK_FILTER.pack(0x94, 0, 0, n)  # BPF_ALU|BPF_MOD|BPF_K
    ret_a = _SOCK_FILTER.pack(0x16, 0, 0, 0)  # BPF_RET|BPF_A
    return ld_cpu + mod_n + ret_a


def _attach_cbpf(sock: socket.socket, program: bytes) -> None:
    insns = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HxxxxxxP", len(program) // _SOCK_FILTER.size, ctypes.addressof(insns))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


# -- eBPF: a counter in an array map ---------------------------------------------------
_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_INSN = struct.Struct("=BBhi")  # code, dst | src << 4, off, imm
BPF_MAP_CREATE, BPF_PROG_LOAD = 0, 5
BPF_MAP_TYPE_ARRAY, BPF_PROG_TYPE_SOCKET_FILTER = 2, 1


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return _INSN.pack(code, dst | src << 4, off, imm)


def _bpf(cmd: int, attr: bytes) -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise ConfigError(f"--steer ebpf-rr: bpf(2) is not wired for {platform.machine()} here")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, 128)
    fd = int(libc.syscall(nr, cmd, buf, 128))
    if fd < 0:
        err = ctypes.get_errno()
        raise ConfigError(
            f"--steer ebpf-rr: the kernel refused bpf(2): {os.strerror(err)} "
            "(it needs root or CAP_BPF)"
        )
    return fd


def _rr_program(n: int) -> int:
    """A program fd: index = counter++ % n (the counter: the map's element 0)."""
    map_fd = _bpf(BPF_MAP_CREATE, struct.pack("=IIIII", BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0))
    try:
        code = b"".join(
            (
                _insn(0x62, dst=10, off=-4, imm=0),  # *(u32 *)(r10 - 4) = 0: the key
                _insn(0xBF, dst=2, src=10),  # r2 = r10
                _insn(0x07, dst=2, imm=-4),  # r2 += -4
                _insn(0x18, dst=1, src=1, imm=map_fd),  # r1 = the map (ld_imm64, map fd)
                _insn(0x00),
                _insn(0x85, imm=1),  # call bpf_map_lookup_elem
                _insn(0x55, dst=0, off=2, imm=0),  # if r0 != 0 goto +2
                _insn(0xB7, dst=0, imm=0),  # r0 = 0
                _insn(0x95),  # exit
                _insn(0xB7, dst=1, imm=1),  # r1 = 1
                _insn(0xC3, dst=0, src=1, imm=0x01),  # r1 = atomic fetch_add(*(u32 *)r0, r1)
                _insn(0xBC, dst=0, src=1),  # w0 = w1
                _insn(0x94, dst=0, imm=n),  # w0 %= n
                _insn(0x95),  # exit
            )
        )
        insns = ctypes.create_string_buffer(code, len(code))
        license = ctypes.create_string_buffer(b"GPL")
        attr = struct.pack(
            "=IIQQ",
            BPF_PROG_TYPE_SOCKET_FILTER,
            len(code) // _INSN.size,
            ctypes.addressof(insns),
            ctypes.addressof(license),
        )
        return _bpf(BPF_PROG_LOAD, attr)
    finally:
        os.close(map_fd)  # the loaded program holds the map
