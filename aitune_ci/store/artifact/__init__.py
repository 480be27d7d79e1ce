"""``ait.save`` / ``ait.load``: a tuned configuration as a ``.ait`` zip that loads without recompiling.

Layout of the archive (every member listed in the manifest with its sha256 and size)::

    manifest.json                 schema_version, spec summary, one entry per module, environment, members
    weights/model.safetensors     the model's state_dict (tied tensors stored once, aliases in the manifest)
    modules/<i>/...               what backend i's ``save`` wrote (.pt2, .onnx, compile-cache bytes, ...)

Loading takes the user's model instance (structure from code, weights and payloads from the file),
checks the archive (:mod:`aitune_ci.store.artifact.safety`) and the manifest before touching a payload,
extracts only into a fresh temporary folder, and never unpickles. Two payload kinds execute code
when used and are therefore loaded only from a *pinned* artifact (``expected_sha256``, which the
pytest plugin takes from the committed baseline) or with ``trusted=True``: AOTInductor packages
and TensorRT engines (native code: refused otherwise) and inductor's compile cache (pickled graphs:
skipped otherwise, so the first call compiles from scratch, with a warning).

The modules, in the order a newcomer reads them: ``safety`` (the pure rules an archive must pass),
``hashing`` (what identifies a model and a tune), ``archive`` (reading and verifying a zip),
``saving``, ``loading`` and ``committed`` (a serving process loading what a repository committed).
"""

from __future__ import annotations

from aitune_ci.store.artifact.archive import WEIGHTS_MEMBER, artifact_sha256, inspect_artifact, module_backends
from aitune_ci.store.artifact.committed import load_committed
from aitune_ci.store.artifact.hashing import spec_hash
from aitune_ci.store.artifact.loading import ArtifactWarning, LoadedArtifact, load
from aitune_ci.store.artifact.safety import ArtifactLimits, format_manifest
from aitune_ci.store.artifact.saving import ArtifactInfo, save

__all__ = [
    "WEIGHTS_MEMBER",
    "ArtifactInfo",
    "ArtifactLimits",
    "ArtifactWarning",
    "LoadedArtifact",
    "artifact_sha256",
    "format_manifest",
    "inspect_artifact",
    "module_backends",
    "load",
    "load_committed",
    "save",
    "spec_hash",
]
