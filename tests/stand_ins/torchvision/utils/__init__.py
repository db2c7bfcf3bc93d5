import sys

from torchvision import placeholder_module

sys.modules[__name__].__getattr__ = placeholder_module(__name__).__getattr__
