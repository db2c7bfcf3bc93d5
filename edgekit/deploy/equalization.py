"""Cross-layer equalisation where the algebra allows it: the exact int8 pass against per-channel spread.

A per-channel scale s_c > 0 moves exactly from one conv's output channel c to the conv reading it
when nothing between them cares about scale: nothing at all (a linear boundary, conv -> BN -> conv
once BatchNorm is folded), or a ReLU (ReLU(x / s) = ReLU(x) / s). Dividing the producer's output
channel c (weights and bias) by s_c and multiplying the consumer's input channel c by s_c leaves the
function unchanged (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", ICCV 2019; the migration of SmoothQuant, Xiao et al. 2023). When the consumer is a
depthwise conv, this is the per-channel scale migration into the depthwise conv that Trio-ViT (arXiv
2405.03882, `QuantModule_Scaled` in shihuihong214/Trio-ViT) applies at the quantiser; here it is
folded into the weights, so any int8 runtime runs it.

The pairs are found on the traced graph (torch.fx), not by module names: a producer qualifies only if
its output, or a channel range of it (a split or a slice), reaches nothing but the consumer, and
each is called once. What the graph forbids is left alone: in the MIT models almost every conv pair
has a Hardswish or GELU between them (not scale-invariant: hswish(x / s) != hswish(x) / s), a
residual add, or a second reader (LiteMLA's qkv feeds the attention and its aggregation), so the
pass finds only linear boundaries there (the aggregation's depthwise 5x5 -> grouped 1x1, the exact
upsample's separable convs), none where the trained models spread; in the Microsoft models it finds
the FFNs, the patch embedding's conv chain and the squeeze-excite (across ReLU), PatchMerging's 1x1
conv into its depthwise conv (across ReLU) and each attention head's q into its depthwise conv (a
linear boundary).

The scale: s_c = sqrt(a_c / w_c), a_c the largest |value| of channel c where the consumer reads it
(on the calibration images), w_c the largest |weight| the consumer applies to it: both the activation
range and the consumer's weights for c become sqrt(a_c w_c), the spread split evenly between the
activations (one int8 scale per tensor) and the weights (one per output channel). Normalised so the
equalised channels' largest range stays what it was (so a tensor that is quantised as a whole, the
qkv output around a q slice, keeps its step); a channel never seen non-zero is left alone.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx
import torch.nn as nn

NO_PAIR = ("no conv pair where a per-channel scale moves exactly (every conv output here reaches a "
           "Hardswish or GELU, a residual add or a second reader before the next conv)")


@dataclass(frozen=True)
class Pair:
    producer: str  # module names in the model
    consumer: str
    channels: tuple[int, int]  # the producer's output channels the consumer reads, [start, stop)
    through_relu: bool

    def describe(self) -> str:
        via = " -> ReLU -> " if self.through_relu else " -> "
        return f"{self.producer}[{self.channels[0]}:{self.channels[1]}]{via}{self.consumer}"


def _is_relu(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.ReLU)
    if node.op == "call_function":
        return node.target in (torch.relu, torch.nn.functional.relu)
    return node.op == "call_method" and node.target == "relu"


def _conv(node: torch.fx.Node, modules: dict[str, nn.Module]) -> nn.Conv2d | None:
    m = modules.get(node.target) if node.op == "call_module" else None
    return m if isinstance(m, nn.Conv2d) else None


def _carriers(node: torch.fx.Node, width: int) -> list[tuple[torch.fx.Node, tuple[int, int]]] | None:
    """How the readers of `node` (an NCHW tensor of `width` channels) take its channels: (the node
    carrying them, [start, stop)): `node` itself, once per reader of the whole tensor; each piece of a
    split along the channels; each channel slice. None if a reader cuts it some other way."""
    found = []
    for user in node.users:
        if user.op == "call_method" and user.target == "split" or (
                user.op == "call_function" and user.target is torch.split):
            sizes = user.args[1] if len(user.args) > 1 else user.kwargs.get("split_size_or_sections")
            dim = user.args[2] if len(user.args) > 2 else user.kwargs.get("dim", 0)
            if dim not in (1, -3) or sizes is None:
                return None
            if isinstance(sizes, int):
                sizes = [sizes] * -(-width // sizes)
            starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
            for piece in user.users:
                if not (piece.op == "call_function" and piece.target is operator.getitem):
                    return None
                found.append((piece, (starts[piece.args[1]], min(starts[piece.args[1] + 1], width))))
        elif user.op == "call_function" and user.target is operator.getitem:
            index = user.args[1]
            if not (isinstance(index, tuple) and len(index) == 2 and index[0] == slice(None)
                    and isinstance(index[1], slice) and index[1].step in (None, 1)):
                return None
            start, stop, _ = index[1].indices(width)
            found.append((user, (start, stop)))
        else:
            found.append((node, (0, width)))
    return found


def equalization_pairs(model: nn.Module) -> list[Pair]:
    """Every (producer conv, consumer conv) pair of `model` across which a per-channel scale moves
    exactly, in graph order: the consumer is the only reader of those channels of the producer's
    output, directly or through a ReLU that only it reads."""
    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        producer = _conv(node, modules) if calls[node.target] == 1 else None  # a module called twice: no
        carriers = _carriers(node, producer.out_channels) if producer is not None else None
        for carrier, channels in carriers or ():
            readers = [c for _, c in carriers if c[0] < channels[1] and channels[0] < c[1]]
            if readers != [channels] or len(carrier.users) != 1:
                continue  # these channels are read elsewhere too
            user = next(iter(carrier.users))
            relu = _is_relu(user, modules) and len(user.users) == 1
            consumer_node = next(iter(user.users)) if relu else user
            consumer = _conv(consumer_node, modules)
            if (consumer is not None and calls[consumer_node.target] == 1
                    and consumer_node.args[0] is (user if relu else carrier)
                    and consumer.in_channels == channels[1] - channels[0]):
                pairs.append(Pair(node.target, consumer_node.target, channels, relu))
    return pairs


def observe(model: nn.Module, calibration, handles: list) -> None:
    """Run the calibration images through `model` for the hooks in `handles`, then remove them."""
    try:
        with torch.no_grad():
            for image in calibration:
                model(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()


def _consumer_columns(consumer: nn.Conv2d) -> torch.Tensor:
    """The consumer's weights as (groups, out per group, in per group, kh, kw)."""
    g = consumer.groups
    w = consumer.weight
    return w.view(g, w.shape[0] // g, w.shape[1], *w.shape[2:])


def cross_layer_equalization(model: nn.Module, resolution=None, calibration=None) -> nn.Module:
    """Equalise every pair `equalization_pairs` finds (in place), with scales measured on
    `calibration` (N, 3, H, W images); the function is unchanged to float rounding."""
    if calibration is None:
        raise ValueError("cross_layer_equalization needs calibration images")
    pairs = equalization_pairs(model)
    modules = dict(model.named_modules())
    peaks: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(_module, inputs):
            peak = inputs[0].detach().abs().amax(dim=(0, 2, 3))
            peaks[name] = peak if name not in peaks else torch.maximum(peaks[name], peak)
        return hook

    observe(model, calibration, [modules[c].register_forward_pre_hook(record(c)) for c in {p.consumer for p in pairs}])
    with torch.no_grad():
        for p in pairs:
            producer, consumer = modules[p.producer], modules[p.consumer]
            cols = _consumer_columns(consumer)
            a = peaks[p.consumer].double()
            w = cols.abs().amax(dim=(1, 3, 4)).reshape(-1).double()
            s = torch.where((a > 0) & (w > 0), torch.sqrt(a / w.clamp_min(1e-30)), torch.ones_like(a))
            # the equalised channels' peak where it was: a tensor quantised as a whole (the q of a qkv
            # tensor, split after it) keeps its int8 step; where the pair is the whole tensor, a common
            # factor changes nothing int8 sees (one activation scale per tensor, one weight scale per row)
            s = (s * (a / s).max() / a.max()).float() if a.max() > 0 else s.float()
            start, stop = p.channels
            producer.weight[start:stop].div_(s.view(-1, *[1] * (producer.weight.dim() - 1)))
            if producer.bias is not None:
                producer.bias[start:stop].div_(s)
            cols.mul_(s.view(consumer.groups, 1, -1, 1, 1))
    return model
