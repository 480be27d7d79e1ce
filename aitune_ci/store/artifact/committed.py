"""``ait.load_committed``: a serving process loads the artifact a repository committed, pinned as CI pins it.

A committed ``.ait`` is only as trustworthy as the sha256 its baseline records: ``load`` refuses
native payloads (AOTInductor, TensorRT) without that pin, and copying it by hand from the JSON, with
the right ``<hardware>`` folder, is ceremony a user gets wrong. This reads both from the same
``.aitune`` folder the plugin writes, for the hardware the model is loaded on.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from aitune_ci.environment import hardware_key
from aitune_ci.errors import ArtifactError, DataFileError
from aitune_ci.hints import did_you_mean
from aitune_ci.store.artifact.loading import LoadedArtifact, load
from aitune_ci.store.baseline import BaselineStore

__all__ = ["load_committed"]


def load_committed(
    fixture: str,
    model: torch.nn.Module,
    *,
    aitune_dir: str | os.PathLike[str] = ".aitune",
    device: torch.device | str | None = None,
) -> LoadedArtifact:
    """Load ``<aitune_dir>/artifacts/<hardware>/<fixture>.ait`` onto ``model``, pinned by its baseline's sha256.

    Args:
        fixture: the ``tune_*`` fixture that wrote it (``--aitune-update``).
        model: an instance of the model it was built for (the artifact supplies the weights).
        aitune_dir: the repository's aitune folder (``--aitune-dir``).
        device: where to run; its hardware picks the baseline (default: the GPU when there is one).

    Raises:
        ArtifactError: no baseline or artifact for this hardware (the message lists the hardware
            that has one), a baseline that pins no artifact, or any refusal of ``load``.
    """
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    root = Path(aitune_dir)
    hardware = hardware_key(device)
    store = BaselineStore(root / "baselines")
    try:
        baseline = store.read(hardware, fixture)
    except DataFileError as exc:
        raise ArtifactError(str(exc)) from None
    if baseline is None:
        elsewhere = sorted(p.parent.name for p in (root / "baselines").glob(f"*/{fixture}.json"))
        known = sorted({p.stem for p in (root / "baselines").glob("*/*.json")})
        if not elsewhere and fixture not in known:
            listed = ", ".join(known[:20]) + (" …" if len(known) > 20 else "") if known else "none"
            raise ArtifactError(
                f"{root}: no baseline of {fixture!r} for any hardware{did_you_mean(fixture, known)}; its "
                f"baselines are: {listed}"
            )
        where = f"; it has one for {', '.join(elsewhere)}" if elsewhere else ""
        raise ArtifactError(
            f"{store.path(hardware, fixture)}: no baseline of {fixture} for this hardware ({hardware}) in "
            f"{root}{where}. Artifacts are built per hardware: run `pytest --aitune --aitune-update "
            f"--aitune-fixtures {fixture}` on this machine, or pass device= for the hardware it was built on"
        )
    if not baseline.artifact_sha256:
        raise ArtifactError(
            f"{store.path(hardware, fixture)} pins no artifact (its update wrote none): run "
            f"`pytest --aitune --aitune-update --aitune-fixtures {fixture}` to write one"
        )
    path = root / "artifacts" / hardware / f"{fixture}.ait"
    return load(path, model, expected_sha256=baseline.artifact_sha256, device=device)
