"""--weights: the three published layouts load strictly; anything else fails with one clear line."""


import pytest
import torch

from conftest import randomize_bn_stats
from edgekit.checkpoints import load_weights, read_state_dict
from edgekit.errors import EdgekitError
from edgekit.models import build_model
from edgekit.registry import get_variant

LAYOUTS = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 300},
    "model": lambda sd: {"model": sd, "optimizer": {"lr": torch.tensor(0.1)}},
}
CASES = {"b0-seg": (64, 64), "b1-cls": (64, 64), "m0-cls": (224, 224)}


@pytest.fixture(scope="module")
def trained():
    """A 'trained' model per case: random weights and BN statistics, deterministic."""
    models = {}
    for i, name in enumerate(CASES):
        torch.manual_seed(100 + i)
        models[name] = randomize_bn_stats(build_model(get_variant(name)), seed=i)
    return models


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_is_exact(tmp_path, trained, name, layout):
    source = trained[name]
    path = tmp_path / "ckpt.pth"
    torch.save(LAYOUTS[layout](source.state_dict()), path)
    torch.manual_seed(999)
    fresh = build_model(get_variant(name))
    x = torch.randn(1, 3, *CASES[name])
    with torch.no_grad():
        assert not torch.equal(fresh(x), source(x))
        load_weights(fresh, path, get_variant(name))
        assert torch.equal(fresh(x), source(x))


def test_legacy_serialization_and_2d_pointwise_weights(tmp_path, trained):
    """Old torch.save format; some Microsoft releases store 1x1 conv weights as 2-D matrices."""
    source = trained["m0-cls"]
    state = {k: (v[:, :, 0, 0] if k.endswith("qkvs.0.c.weight") else v) for k, v in source.state_dict().items()}
    path = tmp_path / "legacy.pth"
    torch.save({"model": state}, path, _use_new_zipfile_serialization=False)
    fresh = build_model(get_variant("m0-cls"))
    assert load_weights(fresh, path, get_variant("m0-cls"))["layout"] == "msra"
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(fresh(x), source(x))


def test_missing_bn_counters_are_tolerated(tmp_path, trained):
    state = {k: v for k, v in trained["b0-seg"].state_dict().items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "c.pt")
    load_weights(build_model(get_variant("b0-seg")), tmp_path / "c.pt", get_variant("b0-seg"))


def test_wrong_variant_lists_first_mismatches(tmp_path, trained):
    torch.save({"state_dict": trained["b0-seg"].state_dict()}, tmp_path / "b0.pt")
    with pytest.raises(EdgekitError) as e:
        load_weights(build_model(get_variant("b1-seg")), tmp_path / "b0.pt", get_variant("b1-seg"))
    msg = str(e.value)
    assert "does not fit b1-seg-cityscapes" in msg and "\n" not in msg
    assert "shape mismatches: backbone.input_stem.op_list.0.conv.weight (file 8x3x3x3, model 16x3x3x3)" in msg
    assert "missing: " in msg


def test_cityscapes_checkpoint_into_ade20k_model(tmp_path):
    torch.save(build_model(get_variant("b1-seg-cityscapes")).state_dict(), tmp_path / "c.pt")
    with pytest.raises(EdgekitError) as e:
        load_weights(build_model(get_variant("b1-seg-ade20k")), tmp_path / "c.pt", get_variant("b1-seg-ade20k"))
    msg = str(e.value)
    assert "head.output_ops.0.op_list.0.conv.weight (file 256x64x1x1, model 150x64x1x1)" in msg
    assert "1 missing: head.output_ops.0.op_list.0.conv.bias" in msg
    assert "7 unexpected: head.output_ops.0.op_list.0.norm.weight" in msg


def test_missing_file(tmp_path):
    with pytest.raises(EdgekitError, match="checkpoint not found"):
        read_state_dict(tmp_path / "nope.pt")


def test_not_a_torch_file(tmp_path):
    (tmp_path / "x.pt").write_text("hello, I am a text file")
    with pytest.raises(EdgekitError, match="not a PyTorch checkpoint"):
        read_state_dict(tmp_path / "x.pt")


def test_empty_file(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"")
    with pytest.raises(EdgekitError, match="empty"):
        read_state_dict(tmp_path / "x.pt")


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file(tmp_path, legacy):
    path = tmp_path / "x.pt"
    torch.save({"w": torch.randn(1000)}, path, _use_new_zipfile_serialization=not legacy)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(EdgekitError, match="truncated"):
        read_state_dict(path)


class Payload:
    def __reduce__(self):  # what a malicious checkpoint would do on load
        return (print, ("pwned",))


def test_not_weights_only_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "extra": Payload()}, path)
    with pytest.raises(EdgekitError, match="refusing .*not weights-only"):
        read_state_dict(path)
    assert "pwned" not in capsys.readouterr().out


def test_no_state_dict_inside(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "x.pt")
    with pytest.raises(EdgekitError, match="holds no state_dict"):
        read_state_dict(tmp_path / "x.pt")
