"""Argument validation shared by the public classes.

Every message has the same shape: the argument's name, what was expected, what was given, and,
where it helps, what to do. ``bool`` is rejected wherever an ``int`` is expected, because
``True`` silently meaning ``1`` hides mistakes.
"""

from __future__ import annotations

from typing import Any


def short(value: object, limit: int = 80) -> str:
    """Return a one-line ``repr`` of ``value`` of at most ``limit`` characters, for messages."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> str:
    """Return ``repr(value)`` with its type, short enough for an error message."""
    return f"{short(value, 60)} of type {type(value).__name__}"


def check_int(name: str, value: Any, *, minimum: int, hint: str = "") -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) of at least ``minimum``.

    Raises:
        TypeError: ``value`` is not an ``int``.
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an int >= {minimum} (got {describe(value)}){hint}")
    if value < minimum:
        raise ValueError(f"'{name}' must be an int >= {minimum} (got {value}){hint}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a ``bool``.

    Raises:
        TypeError: ``value`` is not a ``bool``.
    """
    if not isinstance(value, bool):
        raise TypeError(f"'{name}' must be a bool (got {describe(value)})")
    return value


def check_seed(name: str, value: Any) -> int:
    """Return ``value`` if it is a seed: an ``int`` in ``[0, 2**64)``.

    Raises:
        TypeError: ``value`` is not an ``int``.
        ValueError: ``value`` is negative or ``2**64`` or more.
    """
    check_int(name, value, minimum=0)
    if value >> 64:
        raise ValueError(f"'{name}' must be below 2**64 (got {value})")
    return int(value)


def check_position(name: str, value: Any, maximum: int) -> int:
    """Return ``value`` if it is a start position: an ``int`` in ``[0, maximum]``.

    Raises:
        TypeError: ``value`` is not an ``int``.
        ValueError: ``value`` is negative or above ``maximum``.
    """
    check_int(name, value, minimum=0)
    if value > maximum:
        raise ValueError(
            f"'{name}' must be an int <= {as_power(maximum)} (got {value}): the stream needs "
            "room before its positions pass 2**63"
        )
    return int(value)


def as_power(value: int) -> str:
    """Write ``value`` as ``2**k`` where it is one, for messages."""
    if value > 1 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return str(value)
