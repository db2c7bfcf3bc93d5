"""Loading the authors' published checkpoints, strictly and safely.

Security boundary: files are read with `torch.load(weights_only=True)` only. A checkpoint that needs
arbitrary unpickling (pickled classes, numpy objects, ...) is refused, never loaded "just this once".

Files: `torch.save` pickles (`.pt/.pth/.bin`, weights-only), `.safetensors` (the `safetensors`
package: tensors only, by construction), and a Hugging Face model folder (`config.json` with
`model.safetensors` or `pytorch_model.bin`, as timm's hub copies are).

Layouts, recognised from the keys and mapped onto edgekit's names (which are the authors') exactly,
one mapping per family, then loaded strictly:
- the authors' MIT layout (`backbone.input_stem...` / `backbone.stages...`, `head...`), in a plain
  state_dict or `{"state_dict": ...}` (MIT releases);
- the authors' Microsoft layout (`patch_embed.0.c...`, `blocks1...`), plain or `{"model": ...}`;
- timm's layouts of both families (`stem.in_conv...`, `stages.N.blocks...`; `patch_embed.conv1.conv...`,
  `stages.N.downsample...`), which the Hugging Face copies (`timm/efficientvit_b0.r224_in1k`, ...) use:
  timm renamed the authors' modules (timm/models/efficientvit_mit.py, efficientvit_msra.py); the maps
  below undo its renaming, checked against timm's own forward in tests/test_timm.py.
Other top-level entries (optimizer, epoch) are ignored.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from edgekit.errors import EdgekitError, first_line
from edgekit.registry import Variant

WRAPPER_KEYS = ("state_dict", "model")
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # legacy (pre-1.6) torch.save files start with a pickled magic number
_LIST_FIRST = 5


HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# edgekit's own super-resolution weights (the authors published none), made by benchmarks/train_sr.py
SR_WEIGHTS_DIR = Path(__file__).parent / "data" / "sr"
# timm model names of a Hugging Face folder's config.json "architecture" -> edgekit variant names
_TIMM_ARCH = re.compile(r"^efficientvit_(?P<size>[blm]\d)$")


def weights_file(path: str | Path) -> tuple[Path, str]:
    """(the file holding the tensors, its format): a file as given, or a Hugging Face model folder's
    weights; one line when neither."""
    path = Path(path)
    if path.is_dir():
        config = path / "config.json"
        found = next((path / n for n in HF_WEIGHTS if (path / n).is_file()), None)
        if found is None:
            raise EdgekitError(f"{path} is a folder without {' or '.join(HF_WEIGHTS)} (a Hugging Face model folder "
                               "holds config.json and its weights)")
        if not config.is_file():
            raise EdgekitError(f"{path} has {found.name} but no config.json: not a Hugging Face model folder")
        return found, "huggingface folder (" + ("safetensors" if found.suffix == ".safetensors" else "pickle") + ")"
    if not path.is_file():
        raise EdgekitError(f"checkpoint not found: {path}")
    return path, "safetensors" if path.suffix == ".safetensors" else "pickle"


def hf_architecture(path: str | Path) -> str | None:
    """The edgekit variant a Hugging Face folder's config.json names (timm's `architecture`), if any."""
    path = Path(path)
    if not path.is_dir():
        return None
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EdgekitError(f"{path / 'config.json'} is not readable JSON ({e})") from e
    arch = str(config.get("architecture") or config.get("model_name") or "").split(".")[0]
    m = _TIMM_ARCH.match(arch)
    return f"{m['size']}-cls" if m else None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as e:  # a dependency of edgekit; only a broken install lacks it
        raise EdgekitError("reading .safetensors needs the safetensors package (pip install safetensors)") from e
    try:
        state = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises SafetensorError / OSError for bad headers and short files
        raise EdgekitError(f"{path} is not a readable safetensors file ({first_line(e)})") from e
    if not state:
        raise EdgekitError(f"{path} holds no tensors")
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint (a file or a Hugging Face folder), or an EdgekitError that says
    what is wrong with it."""
    path, _ = weights_file(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
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


# ---- layouts ------------------------------------------------------------------------------------
def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """"mit" / "msra" (the authors'), "timm-mit" / "timm-msra", or "unknown", from the keys."""
    keys = list(state)
    if any(k.startswith("stem.in_conv.") for k in keys):
        return "timm-mit"
    if any(k.startswith("patch_embed.conv1.") for k in keys):
        return "timm-msra"
    if any(k.startswith("backbone.") for k in keys):
        return "mit"
    if any(k.startswith(("patch_embed.0.", "blocks1.")) for k in keys):
        return "msra"
    if any(k.startswith("to_subpixels.") for k in keys):
        return "edgekit-sr"
    return "unknown"


def _timm_mit_key(key: str, large: bool) -> str:
    """timm's EfficientVit / EfficientVitLarge names -> the authors'."""
    stem = "backbone.stages.0.op_list" if large else "backbone.input_stem.op_list"
    if key.startswith("stem.in_conv."):
        return f"{stem}.0." + key[len("stem.in_conv."):]
    if m := re.match(r"stem\.res(\d+)\.(.*)", key):
        return f"{stem}.{int(m[1]) + 1}.{m[2]}"
    if m := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(.*)", key):
        return f"backbone.stages.{int(m[1]) + (1 if large else 0)}.op_list.{m[2]}.{m[3]}"
    head = {"head.in_conv.": "head.op_list.0.", "head.classifier.0.": "head.op_list.2.linear.",
            "head.classifier.1.": "head.op_list.2.norm.", "head.classifier.4.": "head.op_list.3.linear."}
    for old, new in head.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key  # unknown: reported as unexpected by the strict check


def _timm_msra_key(key: str) -> str:
    """timm's EfficientVitMsra names -> the authors' (Conv2d_BN `c`, BN_Linear `l`, flat blocks1-3)."""
    if m := re.match(r"patch_embed\.conv(\d)\.(.*)", key):
        key = f"patch_embed.{2 * (int(m[1]) - 1)}.{m[2]}"
    elif m := re.match(r"stages\.(\d)\.blocks\.(\d+)\.(.*)", key):
        stage = int(m[1])
        key = f"blocks{stage + 1}.{int(m[2]) + (3 if stage > 0 else 0)}.{m[3]}"
    elif m := re.match(r"stages\.(\d)\.downsample\.(res1|patchmerge|res2)\.(.*)", key):
        key = f"blocks{int(m[1]) + 1}.{('res1', 'patchmerge', 'res2').index(m[2])}.{m[3]}"
    elif key.startswith("head.linear."):
        key = "head.l." + key[len("head.linear."):]
    return re.sub(r"\.conv\.(weight|bias)$", r".c.\1", key)


def _family(layout: str) -> str:
    return layout.removeprefix("timm-")


def to_edgekit_names(state: dict[str, torch.Tensor], layout: str, model: nn.Module,
                     variant: Variant) -> dict[str, torch.Tensor]:
    """The state dict under edgekit's (the authors') names; one line when the layout cannot be this
    variant's."""
    names = {"mit": "the authors' MIT EfficientViT", "msra": "the authors' Microsoft EfficientViT",
             "timm-mit": "timm's EfficientViT (MIT)", "timm-msra": "timm's EfficientViT (Microsoft, M series)",
             "edgekit-sr": "edgekit's super-resolution"}
    if (layout == "edgekit-sr") != (variant.task == "sr") and layout != "unknown":
        what = "a super-resolution model" if variant.task == "sr" else "a classifier or segmenter"
        raise EdgekitError(f"this is {names[layout]} layout, which cannot be {variant.name} ({what})")
    if layout == "edgekit-sr":
        return state
    if layout != "unknown" and _family(layout) != variant.family:
        raise EdgekitError(f"this is {names[layout]} layout, which cannot be {variant.name} (a "
                           f"{'Microsoft' if variant.family == 'msra' else 'MIT'} EfficientViT)")
    if layout.startswith("timm") and variant.task != "cls":
        raise EdgekitError(f"this is {names[layout]} layout; timm has only the classifiers, so it cannot be "
                           f"{variant.name} (use the authors' segmentation checkpoint)")
    if layout == "timm-mit":
        large = variant.config.get("backbone") == "large"
        return {_timm_mit_key(k, large): v for k, v in state.items()}
    if layout == "timm-msra":
        out = {_timm_msra_key(k): v for k, v in state.items()}
        # timm recomputes attention_bias_idxs from the resolution (a non-persistent buffer); the
        # authors saved it: take the model's own, which the same resolution gives
        for k, v in model.state_dict().items():
            if k.endswith("attention_bias_idxs"):
                out.setdefault(k, v)
        return out
    return state


def load_weights(model: nn.Module, path: str | Path, variant: Variant) -> dict:
    """Load a checkpoint (file or Hugging Face folder; the authors' or timm's layout) into `model`
    strictly. Returns what was loaded: {"file", "format", "layout"}."""
    file, fmt = weights_file(path)
    named = hf_architecture(path)
    if named is not None and named != variant.name:
        raise EdgekitError(f"{path} holds {named} (its config.json names it), not {variant.name}")
    state = read_state_dict(file)
    layout = detect_layout(state)
    state = check_state_dict(to_edgekit_names(state, layout, model, variant), model, variant)
    model.load_state_dict(state, strict=True)
    return {"file": str(file), "format": fmt, "layout": layout}


def sr_weights_metadata(photos: int, steps: int) -> dict[str, str]:
    """What a shipped SR weights file says of itself (safetensors metadata)."""
    return {"trained_by": "benchmarks/train_sr.py", "train_photos": str(photos), "steps": str(steps)}


def shipped_weights(variant: Variant) -> Path | None:
    """The weights edgekit ships for `variant` (its own SR models), or None (the authors' are the user's)."""
    if variant.task != "sr":
        return None
    path = SR_WEIGHTS_DIR / f"{variant.name}.safetensors"
    if not path.is_file():
        raise EdgekitError(f"{variant.name}: edgekit's weights {path} are missing from this install "
                           f"(benchmarks/train_sr.py {variant.name} makes them)")
    return path


def shipped_weights_note(path: Path) -> str:
    """One line for reports: whose weights these are and how they were made."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return (f"edgekit's own weights, trained on {meta.get('train_photos', '?')} photos by "
            f"{meta.get('trained_by', 'benchmarks/train_sr.py')}: a small demonstration model, not the authors'")
