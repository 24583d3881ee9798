"""Keep only one GPU architecture's SASS in a libfaiss.so .nv_fatbin section, in place.

Each fatbin container (magic 0xBA55ED50, 16-byte header: magic u32, version u16,
header_size u16, fat_size u64) is rewritten at the same address with only the
entries whose kind is ELF (2) and whose arch is the one kept; its fat_size is
reduced and the bytes after it are zeroed. Nothing moves, so the registration
wrappers (.nvFatBinSegment) still point at the container starts; the zeros
compress away. The driver then sees exactly one cubin per container.

Usage: python strip_fatbin.py LIB.so SM   (e.g. 90; pyelftools on PYTHONPATH)
"""
import struct
import sys

from elftools.elf.elffile import ELFFile

MAGIC = 0xBA55ED50


def strip(path: str, keep_sm: int) -> None:
    with open(path, "rb") as fh:
        sec = ELFFile(fh).get_section_by_name(".nv_fatbin")
        start, size = sec["sh_offset"], sec["sh_size"]
        fh.seek(0)
        data = bytearray(fh.read())
    pos, end = start, start + size
    containers = kept_bytes = dropped = 0
    while pos < end:
        magic, ver, hs, fs = struct.unpack_from("<IHHQ", data, pos)
        if magic != MAGIC:
            assert data[pos : pos + 8] == bytes(8), f"unexpected bytes at {pos:#x}"
            pos += 8
            continue
        containers += 1
        e, ee = pos + hs, pos + hs + fs
        keep = []
        while e < ee:
            kind, _v, ehs, psize = struct.unpack_from("<HHIQ", data, e)
            sm = struct.unpack_from("<I", data, e + 28)[0]
            if kind == 2 and sm == keep_sm:
                keep.append(bytes(data[e : e + ehs + psize]))
            else:
                dropped += 1
            e += ehs + psize
        assert e == ee and len(keep) == 1, (hex(pos), len(keep))
        body = b"".join(keep)
        struct.pack_into("<Q", data, pos + 8, len(body))
        data[pos + hs : pos + hs + len(body)] = body
        data[pos + hs + len(body) : ee] = bytes(ee - (pos + hs + len(body)))
        kept_bytes += len(body)
        pos = ee
    with open(path, "wb") as fh:
        fh.write(data)
    print(f"{path}: {containers} fatbin containers, kept sm_{keep_sm} cubins "
          f"({kept_bytes / 2**20:.1f} MiB), dropped {dropped} other entries")


if __name__ == "__main__":
    strip(sys.argv[1], int(sys.argv[2]))
