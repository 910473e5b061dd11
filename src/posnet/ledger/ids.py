"""Transfer ids from natural keys: the same business event always maps to the same id,
so a retry is a harmless ``exists`` (DESIGN.md principles 5 and 6)."""

from __future__ import annotations

import hashlib


def derive_id(*parts: str) -> int:
    """A nonzero 128-bit id from the parts of a natural key."""
    return int.from_bytes(hashlib.sha256(":".join(parts).encode()).digest()[:16], "big") or 1
