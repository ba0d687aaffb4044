"""lycobench: a benchmark suite for text-to-image customization with LyCORIS."""

__version__ = "0.1.0"
