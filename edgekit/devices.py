"""Device facts: the SoCs edgekit knows, how `getprop` names them, and the Hexagon NPU each carries.

This is core data, read by the targets (QNN compiles for an SoC's HTP) and by the device profiles
(edgekit.android_harness.profiles: how a phone of each SoC is run), so neither imports the other.

SoC facts (ids, clusters) are public SoC data collected in ../shared/papers/TABLES.md; confirm them
against `getprop` on a real phone. The Hexagon NPU facts (`Htp`):
- QNN SoC ids: the `Qnn_SocModel_t` enum of the QNN SDK's QnnTypes.h (SM8450 = 36, SM8475 = 42,
  SM8550 = 43, SM8650 = 57, SM8750 = 69), the same ids as Qualcomm's SoC table in LiteRT
  (google-ai-edge/LiteRT, litert/vendors/qualcomm/core/schema/soc_table.h);
- HTP architectures: that table's soc_table.cc (Qualcomm Innovation Center, Apache-2.0): SM8450 and
  SM8475 V69, SM8550 V73, SM8650 V75, SM8750 V79, each with 8 MB of VTCM.
The Snapdragon 8 Elite: ro.soc.model SM8750, ro.board.platform "sun" (device trees of SM8750 phones:
TARGET_BOARD_PLATFORM := sun).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Htp:
    """A Hexagon Tensor Processor as QNN names it."""

    soc_model: int  # Qnn_SocModel_t
    arch: int  # QnnHtpDevice_Arch_t: 69, 73, 75, 79


@dataclass(frozen=True)
class Soc:
    name: str  # the profile name users type: s8gen1, ...
    description: str
    soc_models: tuple[str, ...]  # ro.soc.model (Android 12+)
    platforms: tuple[str, ...]  # ro.board.platform, for phones without ro.soc.model
    htp: Htp | None = None  # the NPU QNN compiles for (None: not a QNN device here)

    def matches(self, props: dict[str, str]) -> bool:
        soc = props.get("ro.soc.model", "").upper()
        if soc:
            return soc in self.soc_models
        return props.get("ro.board.platform", "").lower() in self.platforms


SOCS: dict[str, Soc] = {s.name: s for s in (
    Soc("s8gen1", "Snapdragon 8 Gen 1 / 8+ Gen 1 (the paper's Tables 4-6 device)", ("SM8450", "SM8475"), ("taro",),
        Htp(36, 69)),
    Soc("s8gen2", "Snapdragon 8 Gen 2", ("SM8550",), ("kalama",), Htp(43, 73)),
    Soc("s8gen3", "Snapdragon 8 Gen 3", ("SM8650",), ("pineapple",), Htp(57, 75)),
    Soc("s8elite", "Snapdragon 8 Elite", ("SM8750",), ("sun",), Htp(69, 79)),
    Soc("s865", "Snapdragon 865", ("SM8250",), ("kona",)),
    Soc("s855", "Snapdragon 855 (the paper's Figure 3 device)", ("SM8150",), ("msmnile",)),
)}


def htp_socs() -> tuple[str, ...]:
    """The SoCs with a Hexagon NPU edgekit compiles for."""
    return tuple(name for name, s in SOCS.items() if s.htp is not None)
