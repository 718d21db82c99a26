"""Integer constants shared by the pure-function orders (one home for each)."""

from __future__ import annotations

M32 = 0xFFFFFFFF
"""The low 32 bits."""

M64 = (1 << 64) - 1
"""The low 64 bits."""

HASH_MUL = 0x045D9F3B
"""Thomas Mueller's 32-bit integer hash multiplier, below ``2**27`` (products stay in int64)."""
