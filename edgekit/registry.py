"""The model zoo as data: one `Variant` per name, with the papers' figures next to the config.

Pure data (no torch import) so the CLI can list and validate variants instantly. Figures come from
../shared/papers/TABLES.md (MIT on-device paper Tables 4-6, MSRA paper Table 1).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from edgekit.errors import EdgekitError

Size = tuple[int, int]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PaperMacs:
    resolution: Size
    gmacs: str  # as printed in the paper, in G




@dataclass(frozen=True)
class PaperLatency:
    device: str  # an edgekit device profile name
    resolution: Size
    ms: float
    runtime: str = "tflite-fp32-cpu"


@dataclass(frozen=True)
class PaperFigures:
    """Figures as the papers print them (strings keep the printed precision: "15" is 14.5-15.5)."""

    params_m: str | None = None
    macs: tuple[PaperMacs, ...] = ()
    latency: tuple[PaperLatency, ...] = ()
    source: str = ""

    def macs_at(self, resolution: Size) -> str | None:
        return next((m.gmacs for m in self.macs if m.resolution == resolution), None)


def printed_halfwidth(printed: str) -> float:
    """Half a unit of the last printed digit: the rounding a printed figure carries."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return 0.5 * 10.0**-decimals


def agrees_with_paper(measured: float, printed: str, rel_tol: float) -> bool:
    """Within `rel_tol` of the printed figure, or rounding to it (the paper printed 15M for 15.3M)."""
    paper = float(printed)
    return abs(measured - paper) <= max(rel_tol * paper, printed_halfwidth(printed))


@dataclass(frozen=True)
class Variant:
    name: str
    family: str  # "mit" | "msra"
    task: str  # "cls" | "seg" | "sr"
    dataset: str  # "imagenet" | "cityscapes" | "ade20k" | "div2k"
    num_classes: int  # output channels for "sr" (RGB: 3)
    resolution: Size  # default input (H, W)
    config: dict = field(hash=False, compare=False)
    paper: PaperFigures = PaperFigures()
    checkpoint_layout: str = "state_dict"  # how the authors publish it: "state_dict", "model"; SR: "edgekit"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def output_stride(self) -> int | None:
        """Seg logits come out at 1/8 of the input; classifiers have no spatial output."""
        return 8 if self.task == "seg" else None

    @property
    def scale(self) -> int | None:
        """A super-resolution model's upscaling factor."""
        return self.config["scale"] if self.task == "sr" else None

    @property
    def side_multiple(self) -> int:
        """Every input side must be a multiple of this: the downsampling of cls/seg (32); SR keeps its
        resolution throughout, so any size runs."""
        return 1 if self.task == "sr" else 32

    def logits_shape(self, size: tuple[int, int]) -> tuple[int, ...]:
        """The NCHW output of one image at `size` (what runners are asked to return)."""
        if self.task == "sr":
            return (1, self.num_classes, *(s * self.scale for s in size))
        return (1, self.num_classes, *(s // self.output_stride for s in size)) if self.task == "seg" \
            else (1, self.num_classes)

    @property
    def output_semantics(self) -> str:
        """What the model's output means, for manifests, reports and app metadata."""
        if self.task == "sr":
            return f"RGB in [0, 1] at {self.scale}x the input resolution (clamp before writing pixels)"
        if self.task == "seg":
            return f"{self.dataset} class logits at 1/{self.output_stride} of the input resolution"
        return f"{self.dataset} class logits"


# --- MIT EfficientViT B series ------------------------------------------------------------------

_MIT_BACKBONES = {
    "b0": {"width_list": (8, 16, 32, 64, 128), "depth_list": (1, 2, 2, 2, 2), "dim": 16},
    "b1": {"width_list": (16, 32, 64, 128, 256), "depth_list": (1, 2, 3, 3, 4), "dim": 16},
    "b2": {"width_list": (24, 48, 96, 192, 384), "depth_list": (1, 3, 4, 4, 6), "dim": 32},
    "b3": {"width_list": (32, 64, 128, 256, 512), "depth_list": (1, 4, 6, 6, 9), "dim": 32},
}
_MIT_CLS_HEADS = {"b0": (1024, 1280), "b1": (1536, 1600), "b2": (2304, 2560), "b3": (2304, 2560)}
_MIT_SEG_HEAD = {"b0": (32, 1), "b1": (64, 3), "b2": (96, 3), "b3": (128, 3)}  # width, depth

_CITYSCAPES = (1024, 2048)
_ADE20K = (512, 512)
_R224, _R256, _R288 = (224, 224), (256, 256), (288, 288)

_MIT_SEG_PAPER = {  # params (M), MACs (G) at the dataset resolution, latency resolution, latency ms
    ("b0", "cityscapes"): ("0.7", "4.4", (960, 1920), 200),
    ("b1", "cityscapes"): ("4.8", "25", (896, 1792), 820),
    ("b2", "cityscapes"): ("15", "74", (1024, 2048), 3100),
    ("b3", "cityscapes"): ("40", "179", (1184, 2368), 10000),
    ("b1", "ade20k"): ("4.8", "3.1", (480, 480), 100),
    ("b2", "ade20k"): ("15", "9.1", (416, 416), 210),
    ("b3", "ade20k"): ("39", "22", (512, 512), 800),
}
_MIT_CLS_PAPER = {  # params (M), MACs (G) at 224/256/288, latency ms at 224/256/288
    "b1": ("9.1", ("0.52", "0.68", "0.86"), (19, 24, 31)),
    "b2": ("24", ("1.6", "2.1", "2.6"), (55, 72, 92)),
    "b3": ("49", ("4.0", "5.2", "6.5"), (140, 180, 228)),
}
_MIT_SOURCE = "MIT EfficientViT on-device paper, Tables 4-6 (Snapdragon 8 Gen 1, TFLite fp32)"


def _mit_seg(size: str, dataset: str) -> Variant:
    width, depth = _MIT_SEG_HEAD[size]
    cityscapes = dataset == "cityscapes"
    params, gmacs, lat_res, lat_ms = _MIT_SEG_PAPER[(size, dataset)]
    res = _CITYSCAPES if cityscapes else _ADE20K
    latency = [PaperLatency("s8gen1", lat_res, lat_ms)]
    if (size, dataset) == ("b3", "ade20k"):
        latency.insert(0, PaperLatency("s8gen1", (384, 384), 450))
    config = dict(_MIT_BACKBONES[size])
    config["head"] = {
        "head_width": width,
        "head_depth": depth,
        "expand_ratio": 4,
        "final_expand": 4 if cityscapes else None,
    }
    return Variant(
        name=f"{size}-seg-{dataset}",
        family="mit",
        task="seg",
        dataset=dataset,
        num_classes=19 if cityscapes else 150,
        resolution=res,
        config=config,
        paper=PaperFigures(params, (PaperMacs(res, gmacs),), tuple(latency), _MIT_SOURCE),
    )


def _mit_cls(size: str) -> Variant:
    config = dict(_MIT_BACKBONES[size])
    config["head"] = {"width_list": _MIT_CLS_HEADS[size]}
    paper = PaperFigures(source="no paper row for B0 classification (about 3.4M params)")
    if size in _MIT_CLS_PAPER:
        params, macs, lat = _MIT_CLS_PAPER[size]
        res = (_R224, _R256, _R288)
        paper = PaperFigures(
            params,
            tuple(PaperMacs(r, g) for r, g in zip(res, macs)),
            tuple(PaperLatency("s8gen1", r, ms) for r, ms in zip(res, lat)),
            _MIT_SOURCE,
        )
    return Variant(
        name=f"{size}-cls",
        family="mit",
        task="cls",
        dataset="imagenet",
        num_classes=1000,
        resolution=_R224,
        config=config,
        paper=paper,
    )


# --- MIT EfficientViT L series ------------------------------------------------------------------
# mit-han-lab/efficientvit efficientvit/models/efficientvit/{backbone,cls,seg}.py: efficientvit_backbone_l1..l3,
# efficientvit_cls_l1..l3, efficientvit_seg_l1/l2 (GELU, qkv_dim 32). Figures: the high-resolution paper's
# ImageNet table for L1 (r224: 84.5% top-1, 53M, 5.3G, 3.2 ms on an A100 with TensorRT fp16); the authors'
# applications/efficientvit_{cls,seg}/README.md for the rest. No phone latency is published for L.

# norm_eps: the authors' model zoos set every norm's eps to 1e-7 for the L models (set_norm_eps)
_L = {"dim": 32, "backbone": "large", "norm_eps": 1e-7}
_MIT_L_BACKBONES = {
    "l1": {"width_list": (32, 64, 128, 256, 512), "depth_list": (1, 1, 1, 6, 6), **_L},
    "l2": {"width_list": (32, 64, 128, 256, 512), "depth_list": (1, 2, 2, 8, 8), **_L},
    "l3": {"width_list": (64, 128, 256, 512, 1024), "depth_list": (1, 2, 2, 8, 8), **_L},
}
_MIT_L_CLS = {  # head widths, params (M), MACs (G) per zoo resolution, source
    "l1": ((3072, 3200), "53", ((_R224, "5.3"),),
           "high-resolution paper, ImageNet table (84.5% top-1 at r224; 3.2 ms on an A100, TensorRT fp16)"),
    "l2": ((3072, 3200), "64", ((_R224, "6.9"), (_R256, "9.1"), (_R288, "11"), ((320, 320), "14"),
                                 ((384, 384), "20")), "authors' efficientvit_cls README (85.05% top-1 at r224)"),
    "l3": ((6144, 6400), "246", ((_R224, "28"), (_R256, "36"), (_R288, "46"), ((320, 320), "56"),
                                  ((384, 384), "81")), "authors' efficientvit_cls README (85.81% top-1 at r224)"),
}
_MIT_L_SEG = {  # (size, dataset): head width, depth, expand, final expand, params (M), MACs (G), mIoU
    ("l1", "cityscapes"): (256, 3, 1, None, "40", "282", "82.7"),
    ("l2", "cityscapes"): (256, 5, 1, None, "53", "396", "83.2"),
    ("l1", "ade20k"): (128, 3, 4, 8, "40", "36", "49.2"),
    ("l2", "ade20k"): (128, 3, 4, 8, "51", "45", "50.7"),
}


def _mit_l_cls(size: str) -> Variant:
    widths, params, macs, source = _MIT_L_CLS[size]
    config = {**_MIT_L_BACKBONES[size], "head": {"width_list": widths}}
    return Variant(name=f"{size}-cls", family="mit", task="cls", dataset="imagenet", num_classes=1000,
                   resolution=_R224, config=config,
                   paper=PaperFigures(params, tuple(PaperMacs(r, g) for r, g in macs), (), source))


def _mit_l_seg(size: str, dataset: str) -> Variant:
    width, depth, expand, final, params, gmacs, miou = _MIT_L_SEG[(size, dataset)]
    cityscapes = dataset == "cityscapes"
    res = _CITYSCAPES if cityscapes else _ADE20K
    config = {**_MIT_L_BACKBONES[size], "head": {"head_width": width, "head_depth": depth, "expand_ratio": expand,
                                                 "final_expand": final, "middle_op": "fmbconv"}}
    return Variant(name=f"{size}-seg-{dataset}", family="mit", task="seg", dataset=dataset,
                   num_classes=19 if cityscapes else 150, resolution=res, config=config,
                   paper=PaperFigures(params, (PaperMacs(res, gmacs),), (),
                                      f"authors' efficientvit_seg README ({miou} mIoU)"))


# --- Microsoft EfficientViT M series ------------------------------------------------------------

_MSRA = {  # embed dims, depths, heads, kernels, paper params (M), paper MACs (G; printed as 79M etc.)
    "m0": ((64, 128, 192), (1, 2, 3), (4, 4, 4), (5, 5, 5, 5), "2.3", "0.079"),
    "m1": ((128, 144, 192), (1, 2, 3), (2, 3, 3), (7, 5, 3, 3), "3.0", "0.167"),
    "m2": ((128, 192, 224), (1, 2, 3), (4, 3, 2), (7, 5, 3, 3), "4.2", "0.201"),
    "m3": ((128, 240, 320), (1, 2, 3), (4, 3, 4), (5, 5, 5, 5), "6.9", "0.263"),
    "m4": ((128, 256, 384), (1, 2, 3), (4, 4, 4), (7, 5, 3, 3), "8.8", "0.299"),
    "m5": ((192, 288, 384), (1, 3, 4), (3, 3, 4), (7, 5, 3, 3), "12.4", "0.522"),
}


def _msra_cls(size: str) -> Variant:
    dims, depths, heads, kernels, params, gmacs = _MSRA[size]
    return Variant(
        name=f"{size}-cls",
        family="msra",
        task="cls",
        dataset="imagenet",
        num_classes=1000,
        resolution=_R224,
        config={"embed_dim": dims, "depth": depths, "num_heads": heads, "kernels": kernels},
        paper=PaperFigures(
            params,
            (PaperMacs(_R224, gmacs),),
            (),
            "MSRA EfficientViT paper, Table 1 / ImageNet table (latency only as a ratio on iPhone 11)",
        ),
        checkpoint_layout="model",
    )


# --- Super-resolution (x2) -----------------------------------------------------------------------
# The high-resolution paper's Table 7 rows "EfficientViT" and "EfficientViT w0.75" (BSD100 x2, 160x240 ->
# 320x480). The authors published no SR code or weights: the architecture (edgekit/models/efficientvit_sr.py)
# is edgekit's, and the shipped weights are edgekit's own, trained by benchmarks/train_sr.py.
_SR_BSD100 = (160, 240)
_SR = {  # name: width, Table 7's BSD100 PSNR/SSIM and A100 latency (TensorRT fp16), as printed
    "sr-x2": (48, "32.33 dB PSNR, 0.9019 SSIM on BSD100; 3.2 ms on an A100"),
    "sr-x2-w0.75": (36, "32.31 dB PSNR, 0.9016 SSIM on BSD100; 2.8 ms on an A100"),
}
SR_DESIGN = ("edgekit's own design after the high-resolution paper (the authors published no SR code or "
             "weights)")


def _sr(name: str) -> Variant:
    width, figures = _SR[name]
    return Variant(name=name, family="mit", task="sr", dataset="div2k", num_classes=3, resolution=_SR_BSD100,
                   config={"width": width, "depth": 4, "dim": 16, "expand_ratio": 4, "scale": 2},
                   paper=PaperFigures(source=f"high-resolution paper, Table 7 ({figures}); {SR_DESIGN}"),
                   checkpoint_layout="edgekit", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _build_registry() -> dict[str, Variant]:
    variants = [_mit_seg(s, "cityscapes") for s in ("b0", "b1", "b2", "b3")]
    variants += [_mit_seg(s, "ade20k") for s in ("b1", "b2", "b3")]
    variants += [_mit_cls(s) for s in ("b0", "b1", "b2", "b3")]
    variants += [_mit_l_cls(s) for s in _MIT_L_CLS]
    variants += [_mit_l_seg(s, d) for s, d in _MIT_L_SEG]
    variants += [_msra_cls(s) for s in _MSRA]
    variants += [_sr(name) for name in _SR]
    return {v.name: v for v in variants}


VARIANTS: dict[str, Variant] = _build_registry()
# Short names: `bN-seg` is the Cityscapes model (the paper's headline seg task).
ALIASES: dict[str, str] = {f"{s}-seg": f"{s}-seg-cityscapes" for s in ("b0", "b1", "b2", "b3", "l1", "l2")}


def get_variant(name: str) -> Variant:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in VARIANTS:
        return VARIANTS[key]
    close = difflib.get_close_matches(key, [*VARIANTS, *ALIASES], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise EdgekitError(f"unknown variant {name!r}{hint} (`edgekit variants` lists them all)")


def parse_resolution(text: str | None, variant: Variant) -> Size:
    """'HxW' or a single side 'S' (square); None means the variant's default.

    Every classifier and segmenter downsamples by 32 (MIT: 5 stride-2 stages; MSRA: patch 16 then two
    stride-2 merges), so every side must be a positive multiple of 32; SR models take any size.
    """
    if text is None:
        return variant.resolution
    parts = text.lower().replace("*", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise EdgekitError(f"resolution {text!r} is not HxW or a single number (e.g. 512x1024 or 224)") from None
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2:
        raise EdgekitError(f"resolution {text!r} is not HxW or a single number (e.g. 512x1024 or 224)")
    if any(s <= 0 for s in size):
        raise EdgekitError(f"resolution {text!r} must be positive")
    step = variant.side_multiple
    if any(s % step for s in size):
        raise EdgekitError(
            f"resolution {text!r}: each side must be a multiple of {step} for {variant.name} "
            f"(nearest: {_round_to(size[0], step)}x{_round_to(size[1], step)})"
        )
    return size  # type: ignore[return-value]


def _round_to(x: int, step: int) -> int:
    return max(step, round(x / step) * step)
