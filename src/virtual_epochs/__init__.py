"""Virtual epochs for PyTorch: epochs of a fixed number of steps over an endless data stream.

``VirtualDataLoader`` cuts the endless stream of a loader's batches into epochs of
``steps_per_epoch`` steps and resumes exactly at any step; ``InfiniteSampler`` is an endless,
sharded sample order that makes resuming O(1) and never drains the worker pipeline;
``MixtureSampler`` is the same over weighted sources, in exact proportions, with weight schedules.
"""

from ._protocols import SeekableSampler
from .loader import VirtualDataLoader
from .mixture import MixtureSampler
from .sampler import InfiniteSampler

__all__ = ["InfiniteSampler", "MixtureSampler", "SeekableSampler", "VirtualDataLoader"]
__version__ = "0.1.0"
