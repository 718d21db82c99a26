"""Virtual epochs for PyTorch: epochs of a fixed number of steps over an endless data stream.

``VirtualDataLoader`` cuts the endless stream of a loader's batches into epochs of
``steps_per_epoch`` steps and resumes exactly at any step; ``InfiniteSampler`` is an endless,
sharded sample order that makes resuming O(1) and never drains the worker pipeline, and
``MixtureSampler`` is the same over weighted sources, in exact proportions, with weight
schedules; ``KeyedSampler`` and ``KeyedDataset`` key each sample's random augmentations by its
global position, so that they resume bit for bit too.
"""

from importlib.metadata import PackageNotFoundError, version

from ._protocols import SeekableSampler
from .keyed import KeyedDataset, KeyedSampler, SampleKey
from .loader import VirtualDataLoader
from .mixture import MixtureSampler
from .sampler import InfiniteSampler

__all__ = [
    "InfiniteSampler",
    "KeyedDataset",
    "KeyedSampler",
    "MixtureSampler",
    "SampleKey",
    "SeekableSampler",
    "VirtualDataLoader",
]
try:  # one source of truth: `version` in pyproject.toml, read from the installed metadata
    __version__ = version("virtual-epochs")
except PackageNotFoundError:  # pragma: no cover - the source tree imported without installing
    __version__ = "0+unknown"
