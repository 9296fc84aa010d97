"""File sizes as people read them (decimal units, as download pages and file managers do)."""

from __future__ import annotations

_UNITS = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3))


def human_size(n: int) -> str:
    """``98362432`` -> ``98 MB``; one decimal below ten units (``1.1 GB``)."""
    for unit, scale in _UNITS:
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 10 * scale else f"{n / scale:.0f} {unit}"
    return f"{n} B"


def size_of_size(part: int, whole: int) -> str:
    """``part`` of ``whole`` in the whole's unit, one decimal: ``88.5 of 98.4 MB``.
    The decimal shows a cut-short file as short even when both round to the same unit."""
    for unit, scale in _UNITS:
        if whole >= scale:
            return f"{part / scale:.1f} of {whole / scale:.1f} {unit}"
    return f"{part} of {whole} bytes"
