"""Device profiles as data: how to recognise a phone's SoC from `getprop`, and how to run on it.

SoC facts (ids, clusters, big-core masks) are public SoC data collected in ../shared/papers/TABLES.md;
confirm them against `getprop` on a real phone. The papers' published latencies live with the variants
(edgekit.registry, PaperLatency.device names a profile here).

The Hexagon NPU facts (`Htp`) are what the QNN target compiles for:
- QNN SoC ids: the `Qnn_SocModel_t` enum of the QNN SDK's QnnTypes.h (SM8450 = 36, SM8475 = 42,
  SM8550 = 43, SM8650 = 57, SM8750 = 69), the same ids as Qualcomm's SoC table in LiteRT
  (google-ai-edge/LiteRT, litert/vendors/qualcomm/core/schema/soc_table.h);
- HTP architectures: that table's soc_table.cc (Qualcomm Innovation Center, Apache-2.0): SM8450 and
  SM8475 V69, SM8550 V73, SM8650 V75, SM8750 V79, each with 8 MB of VTCM.
The Snapdragon 8 Elite profile: ro.soc.model SM8750, ro.board.platform "sun" (device trees of SM8750
phones: TARGET_BOARD_PLATFORM := sun), 6 + 2 Oryon cores, the prime pair on cpu6-7.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import EdgekitError

DELEGATES = ("cpu", "gpu", "nnapi", "qnn-tflite", "npu")


@dataclass(frozen=True)
class Htp:
    """A Hexagon Tensor Processor as QNN names it."""

    soc_model: int  # Qnn_SocModel_t
    arch: int  # QnnHtpDevice_Arch_t: 69, 73, 75, 79


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    soc_models: tuple[str, ...]  # ro.soc.model (Android 12+)
    platforms: tuple[str, ...]  # ro.board.platform, for phones without ro.soc.model
    core_mask: str | None  # hex taskset mask of the big cores; None: no pinning
    threads: int
    delegates: tuple[str, ...]
    htp: Htp | None = None  # the NPU the QNN target compiles for (None: not a target here)

    def matches(self, props: dict[str, str]) -> bool:
        soc = props.get("ro.soc.model", "").upper()
        if soc:
            return soc in self.soc_models
        return props.get("ro.board.platform", "").lower() in self.platforms


_QUALCOMM_DELEGATES = ("cpu", "gpu", "nnapi", "qnn-tflite", "npu")
PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (
    DeviceProfile("s8gen1", "Snapdragon 8 Gen 1 / 8+ Gen 1 (the paper's Tables 4-6 device)",
                  ("SM8450", "SM8475"), ("taro",), "f0", 4, _QUALCOMM_DELEGATES, Htp(36, 69)),
    DeviceProfile("s8gen2", "Snapdragon 8 Gen 2", ("SM8550",), ("kalama",), "f0", 4, _QUALCOMM_DELEGATES,
                  Htp(43, 73)),
    DeviceProfile("s8gen3", "Snapdragon 8 Gen 3", ("SM8650",), ("pineapple",), "f0", 4, _QUALCOMM_DELEGATES,
                  Htp(57, 75)),
    DeviceProfile("s8elite", "Snapdragon 8 Elite", ("SM8750",), ("sun",), "c0", 2, _QUALCOMM_DELEGATES,
                  Htp(69, 79)),
    DeviceProfile("s865", "Snapdragon 865", ("SM8250",), ("kona",), "f0", 4, _QUALCOMM_DELEGATES),
    DeviceProfile("s855", "Snapdragon 855 (the paper's Figure 3 device)", ("SM8150",), ("msmnile",), "f0", 4,
                  _QUALCOMM_DELEGATES),
)}
HOST = DeviceProfile("host", "this machine (ai-edge-litert through the host harness)", (), (), None, 2, ("cpu",))


def profile_for(props: dict[str, str]) -> DeviceProfile | None:
    return next((p for p in PROFILES.values() if p.matches(props)), None)


def get_profile(name: str) -> DeviceProfile:
    if name == "host":
        return HOST
    if name not in PROFILES:
        raise EdgekitError(f"unknown device profile {name!r}; known: host, {', '.join(PROFILES)}")
    return PROFILES[name]


def check_delegate(profile: DeviceProfile, delegate: str, harness_delegates: tuple[str, ...] = DELEGATES) -> str:
    if delegate not in harness_delegates:
        raise EdgekitError(f"--delegate {delegate!r} is not one of: {', '.join(harness_delegates)}")
    if delegate not in profile.delegates:
        raise EdgekitError(f"--delegate {delegate} is not available on {profile.name} "
                           f"(available: {', '.join(profile.delegates)})")
    return delegate
