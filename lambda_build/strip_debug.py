"""Strip the DWARF debug sections from the ELF extension modules under a folder, in place.

Some wheels ship their extensions with debug information (SQLAlchemy's Cython modules):
about two thirds of their size, and nothing the Lambda runtime ever reads. This does what
``strip --strip-debug`` does, but for any architecture and with the standard library only (a
cross build for arm64 would otherwise need aarch64 binutils or LLVM on the build machine):

* every byte the dynamic loader maps (everything the program headers cover) is kept unchanged;
* the non-loaded sections after it are repacked without the contents of the ``.debug*``
  sections, whose headers stay, empty, so that no section index changes (symbols, links);
* the section header table is rewritten after them.

Anything it does not recognise (not a 64-bit little-endian ELF, no debug sections, a layout
where a non-loaded section sits among the loaded bytes) is left as it is. Usage:
``python strip_debug.py FOLDER...``; prints what it saved.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

EHDR_SHOFF = 0x28  # e_shoff in the ELF64 header
# p_type p_flags p_offset p_vaddr p_paddr p_filesz p_memsz p_align
PHDR = struct.Struct("<IIQQQQQQ")
# sh_name sh_type sh_flags sh_addr sh_offset sh_size sh_link sh_info sh_addralign sh_entsize
SHDR = struct.Struct("<IIQQQQIIQQ")
NAME, TYPE, FLAGS, OFFSET, SIZE, ALIGN = 0, 1, 2, 4, 5, 8
SHT_NOBITS = 8
SHF_ALLOC = 0x2
SHN_LORESERVE = 0xFF00
DEBUG_PREFIXES = (b".debug", b".zdebug", b".rela.debug", b".rel.debug")


def _layout(data: bytes) -> tuple[int, list[list[int]], int] | None:
    """(end of the loaded bytes, section headers, section names offset), None if not ELF64 LE."""
    if data[:4] != b"\x7fELF" or data[4:6] != b"\x02\x01":  # ELFCLASS64, ELFDATA2LSB
        return None
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
    if (
        phentsize != PHDR.size
        or shentsize != SHDR.size
        or not 0 < shnum < SHN_LORESERVE  # 0: extended numbering
        or not 0 < shstrndx < shnum
        or shoff + shnum * SHDR.size > len(data)
    ):
        return None
    # The loaded part: the ELF and program headers and every segment's file contents.
    loaded_end = max(0x40, phoff + phnum * PHDR.size)
    for i in range(phnum):
        _, _, offset, _, _, filesz, _, _ = PHDR.unpack_from(data, phoff + i * PHDR.size)
        loaded_end = max(loaded_end, offset + filesz)
    sections = [list(SHDR.unpack_from(data, shoff + i * SHDR.size)) for i in range(shnum)]
    if loaded_end > len(data):
        return None
    return loaded_end, sections, sections[shstrndx][OFFSET]


def stripped(data: bytes) -> bytes | None:
    """``data`` without its debug sections, or None when there is nothing (safe) to strip."""
    layout = _layout(data)
    if layout is None:
        return None
    loaded_end, sections, names = layout
    moved: list[int] = []  # the non-loaded sections with file contents, repacked in file order
    debug: set[int] = set()
    for i, section in enumerate(sections[1:], start=1):
        offset, size = section[OFFSET], section[SIZE]
        if section[TYPE] == SHT_NOBITS:
            continue
        loaded = bool(section[FLAGS] & SHF_ALLOC)
        if (offset + size > loaded_end) if loaded else (size and offset < loaded_end):
            return None  # a layout this does not handle
        if not loaded:
            moved.append(i)
            name = data[names + section[NAME] : data.index(b"\0", names + section[NAME])]
            if size and name.startswith(DEBUG_PREFIXES):
                debug.add(i)
    if not debug:
        return None
    out = bytearray(data[:loaded_end])
    for i in sorted(moved, key=lambda i: sections[i][OFFSET]):
        offset, size = sections[i][OFFSET], sections[i][SIZE]
        if i in debug:
            sections[i][OFFSET], sections[i][SIZE] = len(out), 0
            continue
        out += bytes(-len(out) % max(sections[i][ALIGN], 1))
        sections[i][OFFSET] = len(out)
        out += data[offset : offset + size]
    out += bytes(-len(out) % 8)
    struct.pack_into("<Q", out, EHDR_SHOFF, len(out))
    for section in sections:
        out += SHDR.pack(*section)
    return bytes(out) if len(out) < len(data) else None


def strip_tree(folder: Path) -> tuple[int, int]:
    """Strip every ``*.so`` under ``folder``; (files stripped, bytes saved)."""
    count = saved = 0
    for path in sorted(folder.rglob("*.so")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        smaller = stripped(data)
        if smaller is None:
            continue
        path.write_bytes(smaller)
        count += 1
        saved += len(data) - len(smaller)
    return count, saved


def main(argv: list[str]) -> int:
    """Strip the folders given as arguments."""
    if not argv:
        sys.stderr.write("usage: strip_debug.py FOLDER...\n")
        return 2
    for folder in map(Path, argv):
        count, saved = strip_tree(folder)
        if count:
            sys.stdout.write(
                f"strip_debug: {folder}: {count} extensions, {saved / 2**20:.1f} MiB less\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
