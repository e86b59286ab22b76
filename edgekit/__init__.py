"""edgekit: take a pretrained image classifier to an edge device in one reproducible command."""

__version__ = "0.1.0"
