"""The record of an artifact's int8 recipe (the manifest's `target_info["int8"]`): what the target's
quantiser does, what it kept float and why, and the search that chose it. Written once by the target
that quantised, read back by the report lines of every quantising target."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

CHOSEN_BY_FLAG = "--keep-float"
CHOSEN_BY_SEARCH = "the recipe search"
RANKING_RECORDED = 20  # the most costly units a record lists
# the deploy pass the search may choose, recorded with the recipe (Converted.searched_rewrites)
EQUALIZATION_PASS = "cross_layer_equalization"
# the record's own keys; any other key is a fact about the target's quantiser
_KEYS = ("keep_float", "kept_float", "chosen_by", "ranking", "sensitivity", "equalized", "search")


@dataclass(frozen=True)
class Recipe:
    """`keep_float` units kept float (`kept_float`, each {"node", ...}), chosen by `--keep-float` or the
    recipe search (`search`: its record, edgekit.int8.search.Search.record); `ranking`: the order the
    kept units came from ({"measured_on", "most_costly", ...}), None when nothing was ranked;
    `equalized`: what the search's cross-layer equalisation did, None when it was not chosen.
    `quantiser`: the target's facts (activations, weights, what always stays float). TFLite's records
    name their ranking "sensitivity" (`ranking_key`), as its artifacts always have."""

    keep_float: int
    kept_float: list[dict]
    chosen_by: str
    quantiser: dict = field(default_factory=dict)
    ranking: dict | None = None
    equalized: str | None = None
    search: dict | None = None
    ranking_key: str = "ranking"

    def to_json(self) -> dict:
        record = {**self.quantiser, "keep_float": self.keep_float, "kept_float": list(self.kept_float),
                  self.ranking_key: self.ranking, "chosen_by": self.chosen_by}
        if self.chosen_by == CHOSEN_BY_SEARCH:
            record |= {"equalized": self.equalized, "search": self.search}
        return record

    @classmethod
    def from_json(cls, record: dict) -> Recipe:
        key = "sensitivity" if "sensitivity" in record else "ranking"
        return cls(record["keep_float"], record["kept_float"], record.get("chosen_by", CHOSEN_BY_FLAG),
                   {k: v for k, v in record.items() if k not in _KEYS}, record.get(key), record.get("equalized"),
                   record.get("search"), key)

    def renamed(self, names: dict[str, str]) -> Recipe:
        """The record with the units named in `names` renamed (a tensor the target renamed in the file)."""
        def rename(units: list[dict]) -> list[dict]:
            return [{**u, "node": names.get(u["node"], u["node"])} for u in units]

        ranking = None if self.ranking is None else {**self.ranking, "most_costly": rename(self.ranking["most_costly"])}
        return replace(self, kept_float=rename(self.kept_float), ranking=ranking)

    def with_modules(self, modules: dict[str, str]) -> Recipe:
        """The record with each kept unit's PyTorch module (`modules`: unit name -> module path), where known."""
        return replace(self, kept_float=[{**u, "module": modules[u["node"]]} if u["node"] in modules else u
                                         for u in self.kept_float])

    @property
    def rewrites(self) -> tuple[str, ...]:
        """The deploy passes the search ran for this recipe."""
        return (EQUALIZATION_PASS,) if self.equalized else ()

    def lines(self, unit: str, detail: str = "") -> list[str]:
        """The report's lines: what was kept float (`unit`: ops, blocks) and by what, `detail` after it,
        the equalisation and the search's trials."""
        from edgekit.int8.search import summary_lines

        n = self.keep_float
        kept = f"the {n} most costly {unit} kept float" if n else "full int8"
        lines = [f"int8: {kept} ({self.chosen_by}{'; ' + detail if detail else ''})"]
        if self.equalized:
            lines.append(f"int8: {self.equalized}")
        located = [u for u in self.kept_float if "module" in u]
        if located:
            lines.append("int8: kept float, by PyTorch module: " + ", ".join(
                f"{u['module']} ({u['op']})" if "op" in u else u["module"] for u in located))
        return lines + (summary_lines(self.search) if self.search else [])


def equalized_text(samples: int) -> str:
    """What the search's cross-layer equalisation did, as a chosen recipe records it."""
    return f"{EQUALIZATION_PASS} applied by the search (exact; its scales from all {samples} calibration samples)"


def ranking_record(order: list[dict] | None, measured_on: str, **facts) -> dict | None:
    """The ranking a recipe's kept units came from, as recorded: the most costly RANKING_RECORDED."""
    return None if order is None else {"measured_on": measured_on, **facts, "most_costly": order[:RANKING_RECORDED]}
