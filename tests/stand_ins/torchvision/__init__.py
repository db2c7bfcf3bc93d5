"""A test-only import stand-in for torchvision, so that timm (the peer implementation the tests compare
edgekit's models with) imports without the real package: no torchvision wheel on the registries matches
the CPU torch pinned here, and the CUDA one replaces torch. timm's EfficientViT models use none of
torchvision; its data and layer modules only name a few classes at import time, which this provides as
inert placeholders. Using one raises, so nothing can silently compute with it."""

import types


class _Placeholder:
    """Stands for any torchvision class or function timm names at import; using it raises."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision stand-in: the tests' timm models do not use torchvision")

    def __init_subclass__(cls, **kwargs):  # timm subclasses a few transforms at import time
        super().__init_subclass__(**kwargs)


def placeholder_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__getattr__ = lambda attr: (_ for _ in ()).throw(AttributeError(attr)) if attr.startswith("__") \
        else type(attr, (_Placeholder,), {})
    return module


__version__ = "0.0.0+edgekit-test-stand-in"
