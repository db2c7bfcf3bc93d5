"""Loading the authors' published checkpoints, strictly and safely.

Security boundary: files are read with `torch.load(weights_only=True)` only. A checkpoint that needs
arbitrary unpickling (pickled classes, numpy objects, ...) is refused, never loaded "just this once".

Accepted layouts: a plain state_dict, `{"state_dict": ...}` (MIT releases) and `{"model": ...}`
(Microsoft releases); other top-level entries (optimizer, epoch) are ignored.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.registry import Variant

WRAPPER_KEYS = ("state_dict", "model")
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # legacy (pre-1.6) torch.save files start with a pickled magic number
_LIST_FIRST = 5


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, or an EdgekitError that says what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise EdgekitError(f"checkpoint not found: {path}")
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise EdgekitError(f"checkpoint {path} is empty")
    if head != _ZIP_MAGIC and head[0] != _PICKLE_PROTO:
        raise EdgekitError(f"{path} is not a PyTorch checkpoint (expected a file written by torch.save)")
    if head == _ZIP_MAGIC and not zipfile.is_zipfile(path):
        raise EdgekitError(f"checkpoint {path} is truncated or corrupt (its zip directory is missing)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower():
            raise EdgekitError(
                f"refusing {path}: it is not weights-only (it needs arbitrary code to unpickle); "
                "re-save it as torch.save(model.state_dict()) from a trusted environment"
            ) from e
        raise EdgekitError(f"{path} is not a readable PyTorch checkpoint ({e})") from e
    except EOFError as e:
        raise EdgekitError(f"checkpoint {path} is truncated") from e
    except Exception as e:  # torch raises RuntimeError/KeyError/ValueError for mangled files
        raise EdgekitError(f"checkpoint {path} is corrupt or not a PyTorch checkpoint ({type(e).__name__})") from e
    return _unwrap(obj, path)


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if _is_state_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
        keys = ", ".join(map(str, list(obj)[:_LIST_FIRST]))
        raise EdgekitError(
            f"{path} holds no state_dict (top-level keys: {keys}); expected a state_dict, "
            '{"state_dict": ...} or {"model": ...}'
        )
    raise EdgekitError(f"{path} holds a {type(obj).__name__}, not a state_dict")


def _adapt_shapes(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Some Microsoft releases store 1x1 conv weights 2-D; upstream loads them as [:, :, None, None]."""
    out = dict(state)
    for key, tensor in state.items():
        want = expected.get(key)
        if want is not None and tensor.dim() == 2 and want.dim() == 4 and tuple(want.shape) == (*tensor.shape, 1, 1):
            out[key] = tensor[:, :, None, None]
    return out


def _fmt_shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def check_state_dict(state: dict[str, torch.Tensor], model: nn.Module, variant: Variant) -> dict[str, torch.Tensor]:
    """`state` adapted to `model`, or an EdgekitError listing the first mismatches.

    BatchNorm `num_batches_tracked` counters are the only keys allowed to be absent: they do not
    affect inference and some re-saved checkpoints drop them.
    """
    expected = model.state_dict()
    state = _adapt_shapes(state, expected)
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or mismatched):
        for k in expected:
            state.setdefault(k, expected[k])
        return state
    parts = []
    if mismatched:
        shown = ", ".join(
            f"{k} (file {_fmt_shape(state[k])}, model {_fmt_shape(expected[k])})" for k in mismatched[:3]
        )
        parts.append(f"{len(mismatched)} shape mismatches: {shown}")
    if missing:
        parts.append(f"{len(missing)} missing: " + ", ".join(missing[:3]))
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: " + ", ".join(unexpected[:3]))
    raise EdgekitError(f"checkpoint does not fit {variant.name}: " + "; ".join(parts))


def load_weights(model: nn.Module, path: str | Path, variant: Variant) -> nn.Module:
    """Load an official (or edgekit-saved) checkpoint into `model` strictly; returns the model."""
    state = check_state_dict(read_state_dict(path), model, variant)
    model.load_state_dict(state, strict=True)
    return model
