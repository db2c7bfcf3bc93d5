"""Device profiles as data: how a phone of each SoC edgekit knows (edgekit.devices) is run: the
big-core mask `taskset` pins to, the threads, the delegates it has. Recognising a phone's SoC from
`getprop`, and its NPU, are the SoC's facts (edgekit.devices); the papers' published latencies live
with the variants (edgekit.registry, PaperLatency.device names a profile here).

The 8 Elite's 6 + 2 Oryon cores have the prime pair on cpu6-7 (mask c0, 2 threads); the others'
big cluster is cpu4-7 (f0, 4 threads).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.devices import SOCS, Soc
from edgekit.errors import EdgekitError

# What a Snapdragon phone's runtimes reach: XNNPACK on the CPU, LiteRT's GPU delegate, NNAPI, LiteRT's
# QNN delegate, and the HTP itself (QNN context binaries). A harness names the ones its program takes.
QUALCOMM_DELEGATES = ("cpu", "gpu", "nnapi", "qnn-tflite", "npu")


@dataclass(frozen=True)
class DeviceProfile:
    soc: Soc  # what the phone is (edgekit.devices)
    core_mask: str | None  # hex taskset mask of the big cores; None: no pinning
    threads: int
    delegates: tuple[str, ...]

    name = property(lambda self: self.soc.name)
    description = property(lambda self: self.soc.description)
    soc_models = property(lambda self: self.soc.soc_models)
    htp = property(lambda self: self.soc.htp)

    def matches(self, props: dict[str, str]) -> bool:
        return self.soc.matches(props)


PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (
    DeviceProfile(SOCS[name], mask, threads, QUALCOMM_DELEGATES)
    for name, mask, threads in (("s8gen1", "f0", 4), ("s8gen2", "f0", 4), ("s8gen3", "f0", 4), ("s8elite", "c0", 2),
                                ("s865", "f0", 4), ("s855", "f0", 4)))}
HOST = DeviceProfile(Soc("host", "this machine (the runners' host stand-ins)", (), ()), None, 2, ("cpu",))


def profile_for(props: dict[str, str]) -> DeviceProfile | None:
    return next((p for p in PROFILES.values() if p.matches(props)), None)


def get_profile(name: str) -> DeviceProfile:
    if name == "host":
        return HOST
    if name not in PROFILES:
        raise EdgekitError(f"unknown device profile {name!r}; known: host, {', '.join(PROFILES)}")
    return PROFILES[name]


def check_delegate(profile: DeviceProfile, delegate: str, harness_delegates: tuple[str, ...]) -> str:
    if delegate not in harness_delegates:
        raise EdgekitError(f"--delegate {delegate!r} is not one of: {', '.join(harness_delegates)}")
    if delegate not in profile.delegates:
        raise EdgekitError(f"--delegate {delegate} is not available on {profile.name} "
                           f"(available: {', '.join(profile.delegates)})")
    return delegate
