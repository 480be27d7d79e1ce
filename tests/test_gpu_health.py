"""NVML sample folding (pure) and the monitor's behaviour without a GPU."""

from __future__ import annotations

from aitune_ci.gpu_health import GpuMonitor, decode_throttle_reasons, summarize_samples


def test_throttle_bits_decode_to_names():
    assert decode_throttle_reasons(0x1 | 0x40) == ["gpu_idle", "hw_thermal_slowdown"]


def test_idle_is_not_throttling_but_power_capping_is():
    idle = summarize_samples([{"sm": 1980, "mem": 2619, "temp": 40, "power_w": 100.0, "reasons": 0x1}])
    assert not idle.throttled and idle.sm_clock_mhz_min == 1980
    capped = summarize_samples(
        [
            {"sm": 1980, "temp": 60, "power_w": 690.0, "reasons": 0},
            {"sm": 1500, "temp": 85, "power_w": 700.2, "reasons": 0x4},
        ]
    )
    assert capped.throttled and capped.throttle_reasons == ("sw_power_cap",)
    assert (capped.sm_clock_mhz_min, capped.sm_clock_mhz_max, capped.temperature_c_max, capped.power_w_max) == (
        1500,
        1980,
        85,
        700.2,
    )


def test_missing_readings_are_none_not_errors():
    s = summarize_samples([{"sm": None, "reasons": None}])
    assert s.samples == 1 and s.sm_clock_mhz_min is None and not s.throttled


def test_monitor_without_nvml_or_gpu_returns_none():
    import torch

    if torch.cuda.is_available():
        return
    assert GpuMonitor().start().stop() is None
