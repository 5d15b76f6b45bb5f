"""Seeded hash -> number: draws fixed by ``(seed, key)`` alone.

The same ``(seed, key)`` gives the same number in every process, on every machine and
Python version (unlike ``hash()``), and whatever order the keys are met in (unlike a
shared random generator). The number is read from SHA-256 of ``"<seed>:<key>"``.
"""

from __future__ import annotations

import hashlib

_BITS = 64


def _bits(seed: object, key: object) -> int:
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[: _BITS // 8], "big")


def stable_int(seed: object, key: object, mod: int = 2**_BITS) -> int:
    """An integer in ``[0, mod)`` fixed by ``(seed, key)`` (by default all 64 bits: a seed for an RNG)."""
    if mod < 1:
        raise ValueError(f"stable_int: mod must be positive, got {mod}")
    return _bits(seed, key) % mod


def stable_unit(seed: object, key: object) -> float:
    """A number in ``[0, 1)`` fixed by ``(seed, key)``, uniform on a grid of 2**-53 (a double's precision)."""
    return (_bits(seed, key) >> (_BITS - 53)) / 2**53
