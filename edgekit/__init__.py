"""edgekit: EfficientViT from PyTorch to verified on-device artifacts and on-device latencies."""

__version__ = "0.1.0"
