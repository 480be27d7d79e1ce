"""The AOTI crash probe runs once per machine setup, then is remembered on disk."""

from __future__ import annotations

from pathlib import Path

import torch

from aitune_ci.backends import aoti


def test_probe_runs_once_then_the_marker_skips_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("AITUNE_AOTI_PROBE", raising=False)
    probes: list[Path] = []
    monkeypatch.setattr(aoti, "probe_load", lambda path, device: probes.append(path))
    monkeypatch.setattr(aoti, "_load_package_here", lambda path, device: "loaded")
    monkeypatch.setattr(aoti, "_LOADER_WORKS", set())
    backend = aoti.AOTIBackend()

    assert backend._load_package(Path("a.pt2"), torch.device("cpu")) == "loaded"
    assert probes == [Path("a.pt2")] and list((tmp_path / "aitune-ci").iterdir())

    monkeypatch.setattr(aoti, "_LOADER_WORKS", set())  # a new process on the same machine
    backend._load_package(Path("b.pt2"), torch.device("cpu"))
    assert probes == [Path("a.pt2")]

    monkeypatch.setattr(aoti, "_LOADER_WORKS", set())
    monkeypatch.setenv("AITUNE_AOTI_PROBE", "always")
    backend._load_package(Path("c.pt2"), torch.device("cpu"))
    assert probes == [Path("a.pt2"), Path("c.pt2")]


def test_a_failed_probe_leaves_no_marker(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(aoti, "_LOADER_WORKS", set())

    def crash(path, device):
        raise aoti.BackendError("crashed (SIGSEGV)")

    monkeypatch.setattr(aoti, "probe_load", crash)
    try:
        aoti.AOTIBackend()._load_package(Path("a.pt2"), torch.device("cpu"))
    except aoti.BackendError:
        pass
    assert not (tmp_path / "aitune-ci").exists() or not list((tmp_path / "aitune-ci").iterdir())
