"""What the plugin's progress lines show at each verbosity (``aitune_ci.plugin.progress``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from aitune_ci.plugin.progress import TerminalProgress


class _Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        self.lines.append(line)


def _shown(verbosity: int, *messages: str) -> list[str]:
    reporter = _Reporter()
    plugins = {"terminalreporter": reporter, "capturemanager": None}
    config = SimpleNamespace(pluginmanager=SimpleNamespace(get_plugin=plugins.get), get_verbosity=lambda: verbosity)
    progress = TerminalProgress(config)  # type: ignore[arg-type]
    for message in messages:
        progress(message)
    return reporter.lines


@pytest.mark.parametrize("verbosity", [0, -1])
def test_warnings_show_at_any_verbosity(verbosity):
    """The typo'd-key and busy-update warnings vanished under -q, common in CI."""
    compiler = "tune_a · aoti: FAILED — g++ said: wrapper.cpp:12: warning: unused variable"
    lines = _shown(verbosity, "tune_a: tuned in 3.0 s", "warning: pyproject.toml: ... matches no check", compiler)
    assert "[aitune] warning: pyproject.toml: ... matches no check" in lines
    assert (f"[aitune] {compiler}" in lines) is (verbosity == 0)  # a compiler's warning is not ours
    assert ("[aitune] tune_a: tuned in 3.0 s" in lines) is (verbosity == 0)


def test_the_bases_per_round_lines_need_v_as_the_heads_do():
    """In relative mode ~20 "base · round N" lines per fixture were shown without -v."""
    chatty = ("round 7: eager 1.0 ms", "base · round 7: eager 1.0 ms", "base · warm-up 0.2 s")
    assert _shown(0, *chatty, "base · tune_a: tuned in 2.0 s") == ["[aitune] base · tune_a: tuned in 2.0 s"]
    assert len(_shown(1, *chatty)) == 3
