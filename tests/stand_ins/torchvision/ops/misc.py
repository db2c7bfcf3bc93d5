import torch.nn as nn


class FrozenBatchNorm2d(nn.Module):  # timm.layers checks isinstance against it; never built here
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision stand-in: FrozenBatchNorm2d is not available")
