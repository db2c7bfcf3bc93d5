"""Which conv pairs the cross-layer equalisation takes (edgekit.deploy.equalization): the graph's
rules on small modules, and what it finds in the MIT models, where Hardswish and GELU stand between
almost every pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgekit.deploy.equalization import cross_layer_equalization, equalization_pairs


class Chain(nn.Module):
    def __init__(self, act: nn.Module | None, second_reader: bool = False):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.act = act
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise
        self.c = nn.Conv2d(8, 4, 1)
        self.second_reader = second_reader

    def forward(self, x):
        y = self.a(x)
        h = self.act(y) if self.act is not None else y
        out = self.c(self.b(h))
        return out + h.mean() if self.second_reader else out


class Split(nn.Module):
    """qkv -> q into a depthwise conv, k and v elsewhere (the Microsoft attention head's shape)."""

    def __init__(self, slice_form: bool):
        super().__init__()
        self.qkv = nn.Conv2d(3, 12, 1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.slice_form = slice_form

    def forward(self, x):
        t = self.qkv(x)
        if self.slice_form:
            q, k, v = t[:, :4], t[:, 4:8], t[:, 8:]
        else:
            q, k, v = t.split([4, 4, 4], dim=1)
        return self.dw(q) * k + v


@pytest.mark.parametrize("act,second,expected", [
    (nn.ReLU(), False, ["a -> ReLU -> b", "b -> c"]),  # across ReLU into a depthwise conv; a linear boundary
    (None, False, ["a -> b", "b -> c"]),
    (nn.Hardswish(), False, ["b -> c"]),  # hswish(x / s) != hswish(x) / s
    (nn.GELU(), False, ["b -> c"]),
    (nn.ReLU(), True, ["b -> c"]),  # the ReLU output read by another op too
])
def test_pairs_follow_the_algebra(act, second, expected):
    pairs = equalization_pairs(Chain(act, second))
    assert [p.describe().replace("[0:8]", "") for p in pairs] == expected


class Reused(nn.Module):
    """The same ReLU -> conv pair called twice: a scale moved into it would reach both call sites."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x))) + self.b(torch.relu(self.a(x * 2)))


def test_a_module_called_twice_is_left_alone():
    assert equalization_pairs(Reused()) == []


@pytest.mark.parametrize("slice_form", [False, True])
def test_a_channel_range_read_only_by_a_conv_is_a_pair(slice_form):
    model = Split(slice_form).eval()
    assert [(p.producer, p.consumer, p.channels, p.through_relu) for p in equalization_pairs(model)] == [
        ("qkv", "dw", (0, 4), False)]


@pytest.mark.parametrize("make", [lambda: Chain(nn.ReLU()), lambda: Chain(None), lambda: Split(False),
                                  lambda: Split(True)], ids=["relu", "linear", "split", "slice"])
def test_equalization_keeps_the_function_and_moves_the_spread(make):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the weights (the spread below is measured on them, whatever ran before in this process)
    model = make().eval()
    first = equalization_pairs(model)[0]
    producer = dict(model.named_modules())[first.producer]
    start, stop = first.channels
    with torch.no_grad():
        producer.weight[start:stop].mul_(torch.logspace(-1, 1, stop - start).view(-1, 1, 1, 1))  # 100x spread
    x = torch.randn(4, 3, 16, 16, generator=g)

    def spread():
        peaks = producer(x)[:, start:stop].abs().amax(dim=(0, 2, 3))
        return float(peaks.max() / peaks.min())

    with torch.no_grad():
        reference, before = model(x), spread()
        cross_layer_equalization(model, calibration=x.numpy())
        got, after = model(x), spread()
    assert torch.allclose(got, reference, atol=1e-5 * reference.abs().max().item())
    assert before > 10 and after < before ** 0.7, (before, after)  # the consumer's weights took ~the square root


def test_mit_models_offer_only_their_linear_boundaries():
    """In b0-cls every conv output reaches a Hardswish, a residual add or a second reader except the
    attention's aggregation (depthwise 5x5 -> grouped 1x1): those pairs, and no other."""
    from edgekit.deploy import make_deploy_form
    from edgekit.reference import source_model
    from edgekit.registry import get_variant, parse_resolution
    from edgekit.targets import get_target

    v = get_variant("b0-cls")
    size = parse_resolution("224", v)
    model, _ = source_model(v, size, None, "plain")
    form = make_deploy_form(model, size, get_target("tflite"), "fp32")
    pairs = equalization_pairs(form.model)
    assert pairs and all(p.producer.endswith("aggreg.0.0") and p.consumer.endswith("aggreg.0.1")
                         and not p.through_relu for p in pairs)
    assert len(pairs) == sum(1 for n, _ in form.model.named_modules() if n.endswith("aggreg.0.0"))
    x = np.random.default_rng(0).random((2, 3, *size), dtype=np.float32)
    with torch.no_grad():
        reference = form.model(torch.from_numpy(x))
        got = cross_layer_equalization(form.model, size, calibration=x)(torch.from_numpy(x))
    assert torch.allclose(got, reference, atol=1e-5 * reference.abs().max().item())
