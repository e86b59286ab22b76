"""Split computing (BottleFit): a learned bottleneck cuts a classifier into a device-side head and a
server-side tail; see ``model`` (the SplitModel), ``deploy`` (compiling both halves), ``server`` /
``client`` (running them over a network) and ``profile`` (latency against local and full offload)."""

from edgekit.split.model import SplitConfig, SplitModel, TransferQuant, is_split_model

__all__ = ["SplitConfig", "SplitModel", "TransferQuant", "is_split_model"]
