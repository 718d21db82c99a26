"""Warnings that point at the user's line, whatever the call chain inside this package.

``warnings.warn(stacklevel=N)`` counts frames by hand, and any change of the call chain (a
helper extracted, a generator in between) makes it point into this package. ``warn`` counts
them: the warning is attributed to the first frame outside the package.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue ``message`` as a warning attributed to the nearest caller outside this package."""
    frame = sys._getframe(1)  # our caller; sys._getframe is the cheap documented walk
    level = 2  # stacklevel 2 names our caller
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]  # None ends the loop
        level += 1
    warnings.warn(message, category, stacklevel=level)
