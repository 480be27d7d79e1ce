"""``ait.jit(model)``: tune on the first call, then run the winner; no other change to user code."""

from __future__ import annotations

import threading
import warnings
from typing import Any, Mapping, Sequence

import torch

from aitune_ci.engine import tune
from aitune_ci.measure import MeasureConfig, Progress
from aitune_ci.result import TuneResult
from aitune_ci.spec import TuneSpec
from aitune_ci.tolerance import ToleranceSpec

__all__ = ["JitTuned", "jit"]


class JitTuned(torch.nn.Module):
    """Wraps a model; its first call tunes on that one input (no batch sweep, no artifact).

    Later calls go to the winner. If the winner raises on a later input (an ahead-of-time backend
    built for other shapes, say), the wrapper warns once and falls back to eager for good, so a
    deployment never breaks because of tuning. Made by :func:`jit`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        spec_fields: Mapping[str, Any],
        measure_config: MeasureConfig,
        progress: Progress | None,
    ) -> None:
        """Wrap ``model``.

        Args:
            model: the model to tune and run.
            spec_fields: the ``TuneSpec`` fields the user chose (backends, strategy, tolerance).
            measure_config: the measurement budget of the one tune.
            progress: receives the tune's progress lines (``None``: the engine logs them).
        """
        super().__init__()
        self.model = model
        self._spec_fields = dict(spec_fields)
        self._measure_config = measure_config
        self._progress = progress
        self._lock = threading.Lock()
        # A plain dict, not attributes: an nn.Module winner assigned as an attribute would be
        # registered as a child module and appear twice in state_dict().
        self._state: dict[str, Any] = {"fn": None}
        self._fell_back = False
        self.result: TuneResult | None = None

    @property
    def winner(self) -> str | None:
        return self.result.winner if self.result is not None else None

    def _tune(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        spec = TuneSpec(
            model=self.model,
            samples=[(tuple(args), dict(kwargs))],
            device=str(device),
            dynamic_axes=None,
            name=f"jit:{type(self.model).__name__}",
            **self._spec_fields,
        )
        self.result = tune(spec, measure_config=self._measure_config, progress=self._progress)
        runtime = self.result.runtime
        fn = runtime.built.get(self.result.winner) if self.result.winner else None
        self._state["fn"] = fn if fn is not None else self.model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._state["fn"] is None:
            with self._lock:
                if self._state["fn"] is None:
                    self._tune(args, kwargs)
        fn = self._state["fn"]
        if self._fell_back:
            return self.model(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if fn is self.model:
                raise
            warnings.warn(
                f"ait.jit: the tuned backend {self.winner!r} failed on a new input "
                f"({type(exc).__name__}: {exc}); falling back to eager from now on",
                RuntimeWarning,
                stacklevel=2,
            )
            self._fell_back = True
            return self.model(*args, **kwargs)


def jit(
    model: torch.nn.Module,
    *,
    backends: Sequence[str] | None = None,
    strategy: str = "min-latency",
    tolerance: ToleranceSpec = None,
    measure_config: MeasureConfig | None = None,
    progress: Progress | None = None,
) -> JitTuned:
    """Wrap ``model`` so its first call tunes it across ``backends`` and later calls run the winner.

    Raises:
        ValueError: for ``strategy="max-throughput"``: one input allows no batch sweep.
    """
    if strategy == "max-throughput":
        raise ValueError("ait.jit tunes on a single input and does no batch sweep; use 'min-latency'")
    spec_fields = {
        "backends": list(backends) if backends is not None else None,
        "strategy": strategy,
        "tolerance": tolerance,
    }
    return JitTuned(model, spec_fields, measure_config or MeasureConfig(max_total_s=1.0), progress)
