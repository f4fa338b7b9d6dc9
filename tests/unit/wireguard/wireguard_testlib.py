"""Shared by the WireGuard unit tests: a classic BPF interpreter, packet builders.

The interpreter follows the kernel's ``__bpf_prog_run``/``sk_run_filter``
semantics for the instructions natkit's filters use (a load past the end of
the packet ends the program with 0, "drop"), so a filter can be checked on
bytes without a socket. The lab tests run the same programs in the kernel.
The ``wg`` fixtures were captured from the real tool. The packet builders
write IPv4 headers by hand from RFC 791's layout, independently of
:mod:`natkit.wireguard.rawudp`.
"""

from __future__ import annotations

import ipaddress
import struct

from natkit.wireguard.rawudp import (
    BPF_ABS,
    BPF_B,
    BPF_H,
    BPF_IMM,
    BPF_IND,
    BPF_JEQ,
    BPF_JMP,
    BPF_JSET,
    BPF_LD,
    BPF_LDX,
    BPF_MSH,
    BPF_RET,
    BPF_W,
    BpfInstruction,
)

_SIZES = {BPF_W: 4, BPF_H: 2, BPF_B: 1}

# ``wg show wg0 dump`` from wg 1.0.20210914 against wireguard-go, captured on
# this machine (keys made for the fixture and used nowhere else).
PRIVATE = "aKFD0sCDpHchelzjGnE0rT1lvcau7lEEtfcvVu6u2lg="
PUBLIC = "3cPizRbdOj+GBZvOitcziRtWPzxQail8LjQwJGpa7Rg="
PEER_V6 = "8JTsblYU1LLCORkFBWCBuiX2957w+ycY2pdbHZfKR1c="
PEER_V4 = "IMpF2PhzZECiCm7JRbkw0x3NsocfX4Ap0jKZk8Pz6DE="
PSK = "fDSuK6DVBPbIp3tLe2C6Gxhuy0hLSdDqBPt4VyGVZTM="

DUMP = (
    f"{PRIVATE}\t{PUBLIC}\t51820\toff\n"
    f"{PEER_V6}\t(none)\t[2001:db8::1]:5\t(none)\t0\t0\t0\toff\n"
    f"{PEER_V4}\t{PSK}\t192.0.2.1:51820\t10.200.0.2/32,fd00::2/128\t1733352000\t1204\t2376\t25\n"
)


def run_filter(program: tuple[BpfInstruction, ...], packet: bytes) -> int:
    """Run a classic BPF program on ``packet``; its return value (0: drop)."""
    a = x = 0
    pc = 0
    while True:
        if pc >= len(program):
            raise AssertionError("fell off the end of the program")
        ins = program[pc]
        pc += 1
        cls = ins.code & 0x07
        if cls == BPF_RET:
            return ins.k
        if cls == BPF_LD:
            size = _SIZES[ins.code & 0x18]
            mode = ins.code & 0xE0
            offset = ins.k + (x if mode == BPF_IND else 0)
            if mode not in (BPF_ABS, BPF_IND):
                raise AssertionError(f"unsupported load mode {mode:#x}")
            if offset + size > len(packet):
                return 0
            a = int.from_bytes(packet[offset : offset + size], "big")
        elif cls == BPF_LDX:
            mode = ins.code & 0xE0
            if mode == BPF_MSH:
                if ins.k >= len(packet):
                    return 0
                x = 4 * (packet[ins.k] & 0x0F)
            elif mode == BPF_IMM:
                x = ins.k
            else:
                raise AssertionError(f"unsupported ldx mode {mode:#x}")
        elif cls == BPF_JMP:
            op = ins.code & 0xF0
            if op == BPF_JEQ:
                taken = a == ins.k
            elif op == BPF_JSET:
                taken = bool(a & ins.k)
            else:
                raise AssertionError(f"unsupported jump {op:#x}")
            pc += ins.jt if taken else ins.jf
        else:
            raise AssertionError(f"unsupported class {cls}")


def udp_segment(src_port: int, dst_port: int, payload: bytes, *, checksum: int = 0) -> bytes:
    return struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), checksum) + payload


def ipv4_packet(
    segment: bytes,
    *,
    source: str = "198.51.100.2",
    destination: str = "192.168.1.2",
    options: bytes = b"",
    protocol: int = 17,
    fragment: int = 0,
    total: int | None = None,
    version: int = 4,
) -> bytes:
    """An IPv4 header (header checksum left 0: raw sockets get checked packets)."""
    assert len(options) % 4 == 0
    ihl = 5 + len(options) // 4
    length = 4 * ihl + len(segment) if total is None else total
    header = struct.pack(
        "!BBHHHBBH4s4s",
        (version << 4) | ihl,
        0,
        length,
        0x1234,
        fragment,
        64,
        protocol,
        0,
        ipaddress.IPv4Address(source).packed,
        ipaddress.IPv4Address(destination).packed,
    )
    return header + options + segment


def stun_binding(transaction_id: bytes = b"\x01" * 12) -> bytes:
    """A bare Binding request, hand-built (RFC 8489 §5)."""
    return struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction_id
