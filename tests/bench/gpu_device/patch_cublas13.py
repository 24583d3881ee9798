"""Retarget a faiss-gpu-cu12 libfaiss*.so from cuBLAS 12 to cuBLAS 13, in place.

Same-length edits only (nothing moves):
  * .dynstr: "libcublas.so.12" -> "libcublas.so.13", "libcublasLt.so.12" -> "libcublasLt.so.13"
    (DT_NEEDED names, Verneed vn_file names and Vernaux vna_name version names all
    point into .dynstr, so one string edit renames every use);
  * .gnu.version_r: vna_hash of every renamed version name recomputed with the
    SysV ELF hash, because glibc's ld.so matches a needed version by hash AND name.

Usage: python patch_cublas13.py LIB.so [LIB.so ...]   (pyelftools on PYTHONPATH)
"""

from __future__ import annotations

import struct
import sys

from elftools.elf.elffile import ELFFile

RENAMES = {b"libcublas.so.12": b"libcublas.so.13", b"libcublasLt.so.12": b"libcublasLt.so.13"}


def elf_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def patch(path: str) -> None:
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
        fh.seek(0)
        elf = ELFFile(fh)
        dynstr = elf.get_section_by_name(".dynstr")
        verneed = elf.get_section_by_name(".gnu.version_r")
        ds_off, ds_size = dynstr["sh_offset"], dynstr["sh_size"]
        vr_off, vr_count = (verneed["sh_offset"], verneed["sh_info"]) if verneed else (None, 0)

    def dynstr_at(idx: int) -> bytes:
        start = ds_off + idx
        return bytes(data[start : data.index(b"\0", start)])

    # 1. .dynstr string edits (only whole strings: preceded by NUL, ended by NUL)
    for old, new in RENAMES.items():
        assert len(old) == len(new)
        pos = ds_off
        hits = 0
        while True:
            pos = data.find(old + b"\0", pos, ds_off + ds_size)
            if pos < 0:
                break
            if data[pos - 1] == 0:
                data[pos : pos + len(old)] = new
                hits += 1
            pos += len(old)
        print(f"{path}: .dynstr {old.decode()} -> {new.decode()}: {hits} string(s)")

    # 2. .gnu.version_r vna_hash for the renamed names
    renamed = set(RENAMES.values())
    off = vr_off
    for _ in range(vr_count):
        vn_version, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, off)
        aux = off + vn_aux
        for _ in range(vn_cnt):
            vna_hash, vna_flags, vna_other, vna_name, vna_next = struct.unpack_from("<IHHII", data, aux)
            name = dynstr_at(vna_name)
            if name in renamed:
                new_hash = elf_hash(name)
                struct.pack_into("<I", data, aux, new_hash)
                print(f"{path}: verneed file={dynstr_at(vn_file).decode()} name={name.decode()} "
                      f"hash {vna_hash:#010x} -> {new_hash:#010x}")
            else:
                assert vna_hash == elf_hash(name), (name, hex(vna_hash))  # sanity: our hash is right
            aux += vna_next
        off += vn_next

    with open(path, "wb") as fh:
        fh.write(data)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        patch(p)
