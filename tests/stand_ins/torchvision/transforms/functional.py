import enum
import sys

from torchvision import placeholder_module


class InterpolationMode(enum.Enum):  # the names timm's data code maps its interpolation strings to
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


sys.modules[__name__].__getattr__ = placeholder_module(__name__).__getattr__
