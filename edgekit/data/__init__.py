"""Data sources -> ``DataSplits`` (train / val / test) of raw images with labels.

Sources are registered by scheme: ``digits``, ``fashion-mnist[:/path]``, ``imagefolder:/path`` (a
bare directory path means imagefolder). Options follow a ``?``: ``./imgs?val=0.2&seed=1``.
Images stay raw (uint8, native channels); ``ModelSpec.prepare`` turns a batch into model input.
"""

from __future__ import annotations

from edgekit.data.core import DataSplits, ImageDataset, TensorImageDataset, make_loader, prepared_batches
from edgekit.data.sources import DATA_SOURCES, load_data, load_data_for
from edgekit.data.torch_datasets import from_datasets

# Importing the modules registers their sources.
from edgekit.data import digits, fashion_mnist, imagefolder  # noqa: F401,E402

__all__ = ["DATA_SOURCES", "DataSplits", "ImageDataset", "TensorImageDataset", "from_datasets", "load_data", "load_data_for",
           "make_loader", "prepared_batches"]
