from __future__ import annotations

import socket

import pytest
import torch
import torch.nn as nn


def randomize_bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer non-trivial affine params and running stats, like a trained model.

    Fresh BatchNorms (mean 0, var 1, weight 1, bias 0) are near-identities and would let a test pass
    that mixes up which statistics went where. Variances stay well above zero: tiny ones create
    denormals and meaningless blow-ups.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.normalized_shape, generator=g) * 0.5 + 0.75)
            if hasattr(m, "attention_biases"):
                m.attention_biases.copy_(torch.randn(m.attention_biases.shape, generator=g) * 0.5)
    return model


def every_variant_resolution(name: str) -> str | None:
    """The input the slow every-variant exports use: MSRA models at their own 224, MIT seg models at
    256x512 and MIT classifiers at 224 (smaller than their defaults, to keep the slow run short)."""
    from edgekit.registry import VARIANTS

    variant = VARIANTS[name]
    return None if variant.family == "msra" else ("256x512" if variant.task == "seg" else "224")


@pytest.fixture(scope="session")
def b0_fp32(tmp_path_factory):
    """One real b0-seg TFLite fp32 export at 128x256 (no network allowed), shared by the export and
    bundle tests: (output folder, manifest)."""
    from edgekit.export import ExportOptions, export

    out = tmp_path_factory.mktemp("artifacts")
    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network")))
    try:
        manifest = export(ExportOptions("b0-seg", "tflite", "fp32", "128x256", output=out))
    finally:
        mp.undo()
    return out, manifest
