"""Train edgekit's super-resolution weights on the built-in calibration photos (never a verification photo).

    python benchmarks/train_sr.py sr-x2          # ~25 min on a 2-core CPU
    python benchmarks/train_sr.py sr-x2-w0.75

The low-resolution inputs are the photos downscaled with MATLAB-style antialiased bicubic (how DIV2K and
the SR benchmark sets were made) and rounded to 8 bits; L1 loss on 48x48 input patches with flips and
rotations, AdamW with cosine decay (the paper's optimiser), a fixed number of steps from a fixed seed so a
rerun reproduces the result. Scores PSNR/SSIM-Y (2 pixels cropped) of the net and of bicubic on each
verification photo, writes the weights into the package (edgekit/data/sr/NAME.safetensors) and the scores
to benchmarks/results/sr_training.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgekit.calibration.images import BUILTIN_DIR, CALIBRATION, VERIFICATION, load_rgb
from edgekit.checkpoints import SR_WEIGHTS_DIR, sr_weights_metadata
from edgekit.models import build_model
from edgekit.registry import get_variant
from edgekit.sr_metrics import imresize, psnr_y, ssim_y

RESULTS = Path(__file__).parent / "results" / "sr_training.json"
PATCH, BATCH, LR, SEED = 48, 16, 2e-3, 0


def even(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    return a[: h - h % 2, : w - w % 2]


def pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(LR uint8-valued, HR) float64 HWC, the LR made as the benchmark sets make it."""
    hr = even(np.asarray(load_rgb(path), dtype=np.float64))
    return np.clip(np.round(imresize(hr, 0.5)), 0, 255), hr


def batch(rng: np.random.Generator, pairs: list) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for _ in range(BATCH):
        lr, hr = pairs[rng.integers(len(pairs))]
        y0, x0 = rng.integers(0, lr.shape[0] - PATCH), rng.integers(0, lr.shape[1] - PATCH)
        a = lr[y0:y0 + PATCH, x0:x0 + PATCH]
        b = hr[2 * y0:2 * y0 + 2 * PATCH, 2 * x0:2 * x0 + 2 * PATCH]
        if rng.random() < 0.5:
            a, b = a[:, ::-1], b[:, ::-1]
        k = rng.integers(4)
        xs.append(np.rot90(a, k).transpose(2, 0, 1) / 255)
        ys.append(np.rot90(b, k).transpose(2, 0, 1) / 255)
    return torch.tensor(np.stack(xs), dtype=torch.float32), torch.tensor(np.stack(ys), dtype=torch.float32)


def upscale(model: torch.nn.Module, lr: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.tensor(lr.transpose(2, 0, 1)[None] / 255, dtype=torch.float32))[0]
    return np.clip(np.round(out.numpy().transpose(1, 2, 0) * 255), 0, 255)


def score(model: torch.nn.Module) -> list[dict]:
    rows = []
    for name in dict.fromkeys(VERIFICATION["scenes"] + VERIFICATION["objects"]):
        lr, hr = pair(BUILTIN_DIR / name)
        bicubic = np.clip(np.round(imresize(lr, 2.0)), 0, 255)
        sr = upscale(model, lr)
        rows.append({"photo": name, "bicubic_psnr_y": round(psnr_y(bicubic, hr, 2), 3),
                     "psnr_y": round(psnr_y(sr, hr, 2), 3), "bicubic_ssim_y": round(ssim_y(bicubic, hr, 2), 4),
                     "ssim_y": round(ssim_y(sr, hr, 2), 4)})
        rows[-1]["gain_db"] = round(rows[-1]["psnr_y"] - rows[-1]["bicubic_psnr_y"], 3)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=["sr-x2", "sr-x2-w0.75"])
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    variant = get_variant(args.variant)
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    rng = np.random.default_rng(SEED)
    pairs = [pair(BUILTIN_DIR / name) for name in CALIBRATION]
    model = build_model(variant).train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    start = time.perf_counter()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = LR * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        x, y = batch(rng, pairs)
        loss = F.l1_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step}/{args.steps}  L1 {loss.item():.4f}  {time.perf_counter() - start:.0f} s",
                  file=sys.stderr, flush=True)
    minutes = (time.perf_counter() - start) / 60
    model.eval()
    rows = score(model)
    gains = [r["gain_db"] for r in rows]
    for r in rows:
        print(f"{r['photo']:>16}: bicubic {r['bicubic_psnr_y']:.2f} dB  net {r['psnr_y']:.2f} dB  "
              f"({r['gain_db']:+.2f})")
    print(f"median gain over bicubic {np.median(gains):+.2f} dB (min {min(gains):+.2f}); {minutes:.1f} min")

    from safetensors.torch import save_file

    SR_WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = SR_WEIGHTS_DIR / f"{variant.name}.safetensors"
    tmp = target.with_suffix(".tmp")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata=sr_weights_metadata(len(CALIBRATION), args.steps))
    tmp.replace(target)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[variant.name] = {"steps": args.steps, "seed": SEED, "minutes": round(minutes, 1),
                             "train_photos": list(CALIBRATION), "median_gain_db": round(float(np.median(gains)), 3),
                             "min_gain_db": round(min(gains), 3), "photos": rows}
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {target} and {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
