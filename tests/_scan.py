"""The byte scan behind every deletion test: which files under a folder still hold a needle."""

from __future__ import annotations

from pathlib import Path


def files_holding(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """``{file relative to root: [needles it holds]}``, case-insensitive, as UTF-8 or UTF-16 bytes.

    Every file is read whole: SQLite pages and WAL, vector and BM25 files, Chroma's files.
    """
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            blob = path.read_bytes().lower()
            hits = [n for n in needles if n.lower().encode() in blob or n.lower().encode("utf-16-le") in blob]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found
