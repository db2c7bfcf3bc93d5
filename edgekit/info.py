"""What `edgekit variants` and `edgekit info` report: registry facts next to measured ones."""

from __future__ import annotations

from pathlib import Path

from edgekit.registry import ALIASES, VARIANTS, Size, Variant, agrees_with_paper, get_variant, parse_resolution

# The acceptance bounds: measured params within 2% and MACs within 5% of the paper.
PARAMS_REL_TOL = 0.02
MACS_REL_TOL = 0.05


def variant_summary(variant: Variant, size: Size) -> dict:
    """The facts every report and manifest starts with."""
    return {
        "variant": variant.name,
        "family": variant.family,
        "task": variant.task,
        "dataset": variant.dataset,
        "classes": variant.num_classes,
        "resolution": list(size),
    }


def list_variants() -> list[dict]:
    """One row per registry entry (no model is built: instant)."""
    aliases: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    rows = []
    for v in VARIANTS.values():
        rows.append(
            {
                "name": v.name,
                "aliases": aliases.get(v.name, []),
                "family": v.family,
                "task": v.task,
                "dataset": v.dataset,
                "classes": v.num_classes,
                "resolution": list(v.resolution),
                "paper_params_m": v.paper.params_m,
                "paper_gmacs": v.paper.macs_at(v.resolution),
            }
        )
    return rows


def _comparison(measured: float, printed: str | None, rel_tol: float) -> dict:
    if printed is None:
        return {"measured": measured, "paper": None, "ratio": None, "agrees": None}
    return {
        "measured": measured,
        "paper": float(printed),
        "ratio": measured / float(printed),
        "agrees": agrees_with_paper(measured, printed, rel_tol),
    }


def describe_variant(name: str, resolution: str | None = None, weights: str | Path | None = None) -> dict:
    """Build the variant, measure params/MACs/output shape, optionally load a checkpoint strictly."""
    from edgekit.complexity import measure

    variant = get_variant(name)
    size: Size = parse_resolution(resolution, variant)
    measured = measure(variant, size)
    weights_info = None
    if weights is None:
        from edgekit.checkpoints import shipped_weights, shipped_weights_note

        shipped = shipped_weights(variant)
        if shipped is not None:
            weights_info = {"path": str(shipped), "shipped": shipped_weights_note(shipped)}
    if weights is not None:
        from edgekit.checkpoints import load_weights
        from edgekit.models import build_model

        model = build_model(variant, size)
        loaded = load_weights(model, weights, variant)
        weights_info = {"path": str(weights), "loaded": True, "tensors": len(model.state_dict()),
                        "format": loaded["format"], "layout": loaded["layout"]}
    return {
        **variant_summary(variant, size),
        "default_resolution": list(variant.resolution),
        "input": {"shape": [1, 3, *size], "layout": "NCHW", "color": "RGB", "scale": 1 / 255,
                  "mean": list(variant.mean), "std": list(variant.std)},
        "output": {"shape": list(measured.output_shape), "semantics": variant.output_semantics},
        "params_m": _comparison(measured.params / 1e6, variant.paper.params_m, PARAMS_REL_TOL),
        "gmacs": {
            **_comparison(measured.macs / 1e9, variant.paper.macs_at(size), MACS_REL_TOL),
            "paper_resolutions": [list(m.resolution) for m in variant.paper.macs],
        },
        "paper_latency": [
            {"device": lat.device, "resolution": list(lat.resolution), "ms": lat.ms, "runtime": lat.runtime}
            for lat in variant.paper.latency
        ],
        "paper_source": variant.paper.source,
        "weights": weights_info,
    }
