"""Device profiles as data: how to recognise a phone's SoC from `getprop`, and how to run on it.

SoC facts (ids, clusters, big-core masks) are public SoC data collected in ../shared/papers/TABLES.md;
confirm them against `getprop` on a real phone. The papers' published latencies live with the variants
(edgekit.registry, PaperLatency.device names a profile here).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import EdgekitError

DELEGATES = ("cpu", "gpu", "nnapi", "qnn")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    soc_models: tuple[str, ...]  # ro.soc.model (Android 12+)
    platforms: tuple[str, ...]  # ro.board.platform, for phones without ro.soc.model
    core_mask: str | None  # hex taskset mask of the big cores; None: no pinning
    threads: int
    delegates: tuple[str, ...]

    def matches(self, props: dict[str, str]) -> bool:
        soc = props.get("ro.soc.model", "").upper()
        if soc:
            return soc in self.soc_models
        return props.get("ro.board.platform", "").lower() in self.platforms


_QUALCOMM_DELEGATES = ("cpu", "gpu", "nnapi", "qnn")
PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (
    DeviceProfile("s8gen1", "Snapdragon 8 Gen 1 / 8+ Gen 1 (the paper's Tables 4-6 device)",
                  ("SM8450", "SM8475"), ("taro",), "f0", 4, _QUALCOMM_DELEGATES),
    DeviceProfile("s8gen2", "Snapdragon 8 Gen 2", ("SM8550",), ("kalama",), "f0", 4, _QUALCOMM_DELEGATES),
    DeviceProfile("s8gen3", "Snapdragon 8 Gen 3", ("SM8650",), ("pineapple",), "f0", 4, _QUALCOMM_DELEGATES),
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
