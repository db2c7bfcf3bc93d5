"""Class names for each dataset, in output-index order (shipped in edgekit/data/labels/)."""

from __future__ import annotations

from pathlib import Path

from edgekit.registry import Variant

LABELS_DIR = Path(__file__).parent / "data" / "labels"


def class_names(variant: Variant) -> list[str]:
    names = (LABELS_DIR / f"{variant.dataset}.txt").read_text().splitlines()
    if len(names) != variant.num_classes:
        raise ValueError(f"{variant.dataset} labels: {len(names)} names for {variant.num_classes} classes")
    return names
