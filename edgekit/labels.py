"""Class names (and segmentation colours) for each dataset, in output-index order (edgekit/data/); for
super-resolution ("div2k") the names of the output image's channels."""

from __future__ import annotations

from pathlib import Path

from edgekit.registry import Variant

LABELS_DIR = Path(__file__).parent / "data" / "labels"
PALETTES_DIR = Path(__file__).parent / "data" / "palettes"


def class_names(variant: Variant) -> list[str]:
    names = (LABELS_DIR / f"{variant.dataset}.txt").read_text().splitlines()
    if len(names) != variant.num_classes:
        raise ValueError(f"{variant.dataset} labels: {len(names)} names for {variant.num_classes} classes")
    return names


def palette(dataset: str) -> list[list[int]] | None:
    """One [R, G, B] per class for a segmentation dataset (None for classification datasets)."""
    path = PALETTES_DIR / f"{dataset}.txt"
    if not path.is_file():
        return None
    return [[int(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
