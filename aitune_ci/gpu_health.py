"""GPU clocks, temperature, power and throttle reasons around a measurement (read-only, via NVML).

A latency measured while the GPU throttled (thermal or power capping, say) is not comparable with
one that did not; the result marks such blocks instead of hiding them. Nothing here changes the
GPU's settings: NVML is only read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GpuMonitor", "HealthSummary", "decode_throttle_reasons", "summarize_samples"]

# nvmlClocksEventReasons / nvmlClocksThrottleReasons bits (nvml.h). Idle and "applications clocks
# setting" are not slowdowns a measurement should be flagged for.
_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
_BENIGN = {"gpu_idle", "applications_clocks_setting", "display_clock_setting"}


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the reasons set in an NVML throttle-reason bitmask (pure)."""
    return [name for bit, name in _REASONS.items() if mask & bit]


@dataclass(frozen=True)
class HealthSummary:
    """What the GPU did during one measurement block."""

    samples: int
    sm_clock_mhz_min: int | None
    sm_clock_mhz_max: int | None
    mem_clock_mhz_min: int | None
    temperature_c_max: int | None
    power_w_max: float | None
    throttle_reasons: tuple[str, ...] = ()
    throttled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "sm_clock_mhz_min": self.sm_clock_mhz_min,
            "sm_clock_mhz_max": self.sm_clock_mhz_max,
            "mem_clock_mhz_min": self.mem_clock_mhz_min,
            "temperature_c_max": self.temperature_c_max,
            "power_w_max": self.power_w_max,
            "throttle_reasons": list(self.throttle_reasons),
            "throttled": self.throttled,
        }


def summarize_samples(samples: list[dict[str, Any]]) -> HealthSummary:
    """Fold NVML samples ``{sm, mem, temp, power_w, reasons}`` into one summary (pure)."""

    def pick(key: str) -> list[Any]:
        return [s[key] for s in samples if s.get(key) is not None]

    reasons: set[str] = set()
    for s in samples:
        reasons.update(decode_throttle_reasons(int(s.get("reasons") or 0)))
    bad = sorted(reasons - _BENIGN)
    sm, mem, temp, power = pick("sm"), pick("mem"), pick("temp"), pick("power_w")
    return HealthSummary(
        samples=len(samples),
        sm_clock_mhz_min=min(sm) if sm else None,
        sm_clock_mhz_max=max(sm) if sm else None,
        mem_clock_mhz_min=min(mem) if mem else None,
        temperature_c_max=max(temp) if temp else None,
        power_w_max=round(max(power), 1) if power else None,
        throttle_reasons=tuple(sorted(reasons)),
        throttled=bool(bad),
    )


@dataclass
class GpuMonitor:
    """Samples NVML every ``interval_s`` in a thread between ``start()`` and ``stop()``.

    Unavailable (no GPU, no nvidia-ml-py) -> ``stop()`` returns None and nothing is sampled.
    """

    device_index: int = 0
    interval_s: float = 0.1
    _samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _handle: Any = None
    _nvml: Any = None

    def start(self) -> GpuMonitor:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self._physical_index())
        except Exception:
            self._nvml = None
            return self
        self._samples = []
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="aitune-gpu-monitor", daemon=True)
        self._thread.start()
        return self

    def _physical_index(self) -> int:
        # CUDA_VISIBLE_DEVICES renumbers devices for CUDA, but NVML sees physical indexes.
        import os

        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if ids and ids[self.device_index].isdigit():
            return int(ids[self.device_index])
        return self.device_index

    def _sample(self) -> None:
        n, h = self._nvml, self._handle
        s: dict[str, Any] = {"t": time.time()}
        for key, fn in (
            ("sm", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
            ("mem", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)),
            ("temp", lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
            ("power_w", lambda: n.nvmlDeviceGetPowerUsage(h) / 1000.0),
            ("reasons", lambda: n.nvmlDeviceGetCurrentClocksThrottleReasons(h)),
        ):
            try:
                s[key] = fn()
            except Exception:
                s[key] = None
        self._samples.append(s)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def stop(self) -> HealthSummary | None:
        if self._nvml is None:
            return None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._sample()
        return summarize_samples(self._samples)
