"""``ait.load``: a checked archive onto the user's model, each payload used only where it is safe here."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from aitune_ci.backends.base import Backend, BuildContext
from aitune_ci.backends.registry import fingerprint, get_backend
from aitune_ci.errors import AituneCIError, ArtifactError
from aitune_ci.modules import CallableModule, with_submodules_replaced
from aitune_ci.store.artifact.archive import WEIGHTS_MEMBER, Archive, module_backends
from aitune_ci.store.artifact.hashing import jsonable, state_entries, structure_sha256
from aitune_ci.store.artifact.safety import (
    ArtifactLimits,
    describe_differences,
    environment_differences,
    input_lines,
    missing_cpu_features,
    non_portable_differences,
    payload_executes_code,
    rebuild_hint,
)

__all__ = ["ArtifactWarning", "LoadedArtifact", "load"]


class ArtifactWarning(UserWarning):
    """An artifact loaded, but not as well as it could: another environment, or a skipped compile cache."""


class LoadedArtifact(torch.nn.Module):
    """What :func:`load` returns: call it like the tuned model.

    Calls run under ``torch.inference_mode()``, as the tune validated and measured them.

    Attributes:
        model: the user's model holding the artifact's weights (for a mixture, a copy of its module
            tree sharing those weights, with the tuned submodules swapped in).
        manifest: the validated manifest.
        sha256: the artifact file's sha256.
        backends: module path -> backend (``""`` is the whole model).
    """

    def __init__(
        self,
        run: Callable[..., Any],
        model: torch.nn.Module,
        manifest: Mapping[str, Any],
        sha256: str,
        path: Path,
        workdir: Path,
    ) -> None:
        super().__init__()
        self.model = model
        self.manifest = dict(manifest)
        self.sha256 = sha256
        self.path = path
        self.backends = module_backends(manifest["modules"])
        self.__dict__["_run"] = run  # not a registered submodule: .to() must not touch a compiled payload
        # Payload files (ONNX, .pt2) stay on disk while the module lives, and go with it.
        self.__dict__["_cleanup"] = weakref.finalize(self, shutil.rmtree, str(workdir), ignore_errors=True)

    @property
    def runner(self) -> Callable[..., Any]:
        """The loaded callable itself, without this wrapper's per-call ``inference_mode``.

        A paired A/B timing calls this and a fresh build the same way, so the wrapper's own
        overhead (microseconds, but a large share of a tiny model's latency) is not measured.
        """
        return self.__dict__["_run"]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        try:
            with torch.inference_mode():
                return self.__dict__["_run"](*args, **kwargs)
        except Exception as exc:
            # A backend's own error (onnxruntime's "Unexpected input data type", a C++ frame from a
            # package) never says what it expected; the exception keeps its type for callers.
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(self._inputs_note())
            raise

    def _inputs_note(self) -> str:
        m = self.manifest
        axes = "; ".join(f"{p} dim {d}" for p, dims in m["dynamic_axes"].items() for d in dims) or "none"
        return (
            f"aitune-ci: this artifact ({self.extra_repr()}) was built and validated on {m['dtype']} inputs on "
            f"{m['device']} like {'; '.join(input_lines(m))} (dynamic axes: {axes}); a call with another dtype, "
            "rank, device or keyword fails in the backend"
        )

    def extra_repr(self) -> str:
        mix = ", ".join(f"{m or '(whole model)'}: {b}" for m, b in self.backends.items())
        return f"{self.manifest['fixture']} [{mix}] sha256={self.sha256[:12]}"


def load(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    *,
    expected_sha256: str | None = None,
    device: torch.device | str | None = None,
    trusted: bool = False,
    limits: ArtifactLimits | None = None,
) -> LoadedArtifact:
    """Load a ``.ait`` artifact onto ``model`` and return a ready-to-call module.

    ``model`` supplies the structure (an instance of the tuned model's class); the artifact supplies
    the weights (written into ``model`` in place, moved to the device and dtype) and each module's
    backend payload, loaded with no recompilation where the backend allows it.

    Args:
        path: the ``.ait`` file.
        model: an instance of the model the artifact was built for.
        expected_sha256: the sha256 the committed baseline records; the file must match it. A
            pinned artifact may also load payloads that execute code (see the
            :mod:`aitune_ci.store.artifact` docstring).
        device: where to run (default: the device it was built for).
        trusted: load payloads that execute code without a pin (only for files you built yourself).
        limits: caps on archive sizes and counts (default :class:`ArtifactLimits`).

    Raises:
        ArtifactError: for every refusal (unsafe or corrupt archive, sha256 mismatch, unknown
            schema, another environment for a device-specific payload, a model that does not fit,
            a backend that cannot run here); the message says what to do.
    """
    if not isinstance(model, torch.nn.Module):
        raise ArtifactError(
            f"load needs the model instance (an nn.Module) the artifact was built for, got {type(model).__name__}"
        )
    limits = limits or ArtifactLimits()
    with Archive(path, limits, expected_sha256) as archive:
        manifest, source = archive.manifest, archive.source
        device_ = _resolve_device(device, manifest, source)
        dtype = _resolve_dtype(manifest, source)
        plan = _plan_entries(archive, device_, fingerprint(device_), expected_sha256 is not None or trusted)
        root = Path(tempfile.mkdtemp(prefix="aitune-ait-"))
        try:
            archive.verify(write_to=root / "members")
            model.eval().to(device_)
            if dtype != torch.float32:
                model.to(dtype)
            _check_structure(model, manifest, dtype, source)
            _load_weights(model, root / "members" / WEIGHTS_MEMBER, manifest, source, archive.hint)
            loaded = {
                entry["module"]: _load_entry(entry, backend, use, model, root, device_, dtype, archive)
                for entry, backend, use in plan
            }
            run, runner_model = _assemble(model, loaded, manifest)
            return LoadedArtifact(run, runner_model, manifest, archive.sha256, Path(path), root)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise


def _assemble(
    model: torch.nn.Module, loaded: Mapping[str, Callable[..., Any]], manifest: Mapping[str, Any]
) -> tuple[Callable[..., Any], torch.nn.Module]:
    """The callable to run and the model it belongs to: the whole model's, or the mixture's module tree."""
    if "" in loaded:
        return loaded[""], model
    backends = module_backends(manifest["modules"])
    replacements = {
        module: fn if isinstance(fn, torch.nn.Module) else CallableModule(fn, f"backend={backends[module]!r}")
        for module, fn in loaded.items()
    }
    mixture = with_submodules_replaced(model, replacements)
    return mixture, mixture


def _resolve_device(requested: torch.device | str | None, manifest: Mapping[str, Any], source: str) -> torch.device:
    text = str(requested) if requested is not None else manifest["device"]
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError) as exc:
        raise ArtifactError(f"{source}: device {text!r} is not a device torch knows ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArtifactError(
            f"{source}: the artifact was built for {manifest['device']} but CUDA is not available here; pass "
            "device='cpu' to load it on the CPU (possible only for portable backends such as onnxruntime or eager)"
        )
    return device


def _resolve_dtype(manifest: Mapping[str, Any], source: str) -> torch.dtype:
    dtype = getattr(torch, manifest["dtype"], None)
    if not isinstance(dtype, torch.dtype):
        raise ArtifactError(f"{source}: manifest dtype {manifest['dtype']!r} is not a torch dtype")
    return dtype


def _plan_entries(
    archive: Archive, device: torch.device, here: Mapping[str, Any], allow_code: bool
) -> list[tuple[dict[str, Any], Backend, bool]]:
    """Per module entry: the backend here, and whether its payload is used. Raises before extraction."""
    differences = environment_differences(archive.manifest["environment"], here)
    plan = []
    warned_env = False
    for entry in archive.manifest["modules"]:
        backend = _backend_here(entry, device, archive)
        _refuse_non_portable(entry, backend, differences, archive)
        if differences and not warned_env:
            warned_env = True
            warnings.warn(
                ArtifactWarning(
                    f"{archive.source}: built in another environment ({describe_differences(differences)}); its "
                    "payloads are portable so it loads, but its latency and numerics may differ from the baseline's"
                ),
                stacklevel=3,
            )
        plan.append((entry, backend, _payload_is_used(entry, backend, device, differences, allow_code, archive.source)))
    return plan


def _backend_here(entry: Mapping[str, Any], device: torch.device, archive: Archive) -> Backend:
    """The registered backend an entry names, with the options it was built with, able to run on ``device``."""
    name, what = entry["backend"], entry["module"] or "the whole model"
    try:
        backend = get_backend(name)
    except AituneCIError as exc:
        raise ArtifactError(
            f"{archive.source}: {what} uses backend {name!r}, which is not registered here ({exc}); install the "
            f"package that provides it, or {archive.hint}"
        ) from None
    if jsonable(backend.options) != entry["options"]:
        raise ArtifactError(
            f"{archive.source}: {what} was built with backend {name!r} options {entry['options']}, but this aitune-ci "
            f"registers {name!r} with {jsonable(backend.options)}; {archive.hint}"
        )
    ok, reason = backend.available(device)
    if not ok:
        raise ArtifactError(
            f"{archive.source}: {what} needs backend {name!r}, which cannot run on {device} here: {reason}"
        )
    return backend


def _refuse_non_portable(
    entry: Mapping[str, Any],
    backend: Backend,
    differences: Mapping[str, tuple[Any, Any]],
    archive: Archive,
) -> None:
    """A device-specific payload from an environment it cannot survive is refused, with how they differ."""
    device_specific = entry["payload_is_device_specific"] or backend.payload_is_device_specific
    blocking = non_portable_differences(differences)
    if not (device_specific and entry["files"] and blocking):
        return
    lacking = missing_cpu_features(*blocking["cpu_features"]) if "cpu_features" in blocking else []
    why = f"; this CPU lacks {', '.join(lacking)}, so its code would die of an illegal instruction" if lacking else ""
    others = {k: v for k, v in differences.items() if k not in blocking}
    also = f" It differs too in {describe_differences(others)}." if others else ""
    raise ArtifactError(
        f"{archive.source}: {entry['module'] or 'the whole model'} uses backend {entry['backend']!r}, whose payload "
        f"is compiled for one device and library build, and this artifact comes from another environment "
        f"({describe_differences(blocking)}{why}).{also} Rebuild it here: {archive.hint} "
        f"(`aitune-ci inspect {archive.source}` shows the environment it was built in)"
    )


def _payload_is_used(
    entry: Mapping[str, Any],
    backend: Backend,
    device: torch.device,
    differences: Mapping[str, tuple[Any, Any]],
    allow_code: bool,
    source: str,
) -> bool:
    """Whether an entry's payload may be used here; a payload that executes code needs a pin or trust.

    Native code without a pin is refused; a compile cache without one, or from a CPU with other
    features, is skipped with a warning (the first call then compiles here).
    """
    name, what = entry["backend"], entry["module"] or "the whole model"
    if (entry["executes_code"] or payload_executes_code(backend, entry["files"])) and not allow_code:
        if entry["ahead_of_time"]:
            raise ArtifactError(
                f"{source}: {what} uses backend {name!r}, whose payload is executable code (a compiled library "
                "or engine), and the artifact is not pinned. Pass expected_sha256=<the artifact_sha256 of your "
                "committed baseline> (the pytest plugin does), or trusted=True if you built this file yourself"
            )
        warnings.warn(
            ArtifactWarning(
                f"{source}: skipping the compile cache of {what} ({name}): it holds pickled compiled graphs and "
                "the artifact is not pinned, so the first call compiles from scratch. Pass expected_sha256=<the "
                "artifact_sha256 of your committed baseline> or trusted=True to use it"
            ),
            stacklevel=4,
        )
        return False
    if device.type == "cpu" and entry["files"] and not entry["ahead_of_time"] and "cpu_features" in differences:
        # Inductor generates CPU kernels for the vector ISA it finds, but its cache key (torch
        # 2.13's CacheBase.get_system) names no CPU: another CPU's entries would be taken as ours.
        warnings.warn(
            ArtifactWarning(
                f"{source}: skipping the compile cache of {what} ({name}): its kernels were generated on a CPU "
                f"with other features ({describe_differences({'cpu_features': differences['cpu_features']})}), "
                "and inductor's cache does not tell CPUs apart, so the first call compiles here"
            ),
            stacklevel=4,
        )
        return False
    return True


def _load_weights(model: torch.nn.Module, file: Path, manifest: Mapping[str, Any], source: str, hint: str) -> None:
    try:
        state = load_file(str(file), device="cpu")
    except Exception as exc:  # a consistent manifest around a bad file: still a refusal, not a crash
        raise ArtifactError(f"{source}: the weights cannot be read ({type(exc).__name__}: {exc}); {hint}") from None
    for alias, stored in manifest["weights"]["aliases"].items():
        if stored not in state:
            raise ArtifactError(f"{source}: weight alias {alias!r} points to {stored!r}, which is not stored; {hint}")
        state[alias] = state[stored]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{source}: the weights do not fit the model ({exc}); {hint}") from None


def _check_structure(model: torch.nn.Module, manifest: Mapping[str, Any], dtype: torch.dtype, source: str) -> None:
    """The model given is an instance of the one saved: same module types, state names, shapes and dtypes."""
    entries = state_entries(model, dtype)
    if structure_sha256(model, entries) == manifest["model"]["structure_sha256"]:
        return
    saved = {e[0]: e for e in manifest["model"]["state"]}
    have = {e[0]: e for e in entries}
    problems = [f"missing {n!r}" for n in saved if n not in have][:3]
    problems += [f"unexpected {n!r}" for n in have if n not in saved][:3]
    problems += [
        f"{n!r} is {have[n][2]}{have[n][1]} here, {saved[n][2]}{saved[n][1]} in the artifact"
        for n in have
        if n in saved and have[n] != saved[n]
    ][:3]
    detail = "; ".join(problems) or "the submodule types differ"
    raise ArtifactError(
        f"{source}: the model passed to load is not the one this artifact was built for "
        f"(given {type(model).__module__}.{type(model).__qualname__}, built for {manifest['model']['class']}: "
        f"{detail}). Pass an instance of the tuned "
        f"model class, or {rebuild_hint(manifest['fixture'])}"
    )


def _load_entry(
    entry: Mapping[str, Any],
    backend: Backend,
    use_payload: bool,
    model: torch.nn.Module,
    root: Path,
    device: torch.device,
    dtype: torch.dtype,
    archive: Archive,
) -> Callable[..., Any]:
    """One module's callable: its payload loaded by its backend, or rebuilt where there is none (or it is skipped)."""
    name, what = entry["backend"], entry["module"] or "the whole model"
    try:
        module = model.get_submodule(entry["module"]) if entry["module"] else model
    except AttributeError:
        raise ArtifactError(
            f"{archive.source}: the model has no submodule {entry['module']!r} (tuned with {name}); {archive.hint}"
        ) from None
    indir = root / "members" / entry["dir"]
    indir.mkdir(parents=True, exist_ok=True)
    scratch = root / "scratch" / entry["dir"]
    scratch.mkdir(parents=True, exist_ok=True)
    axes = {p: {int(d): n for d, n in dims.items()} for p, dims in entry["dynamic_axes"].items()}
    ctx = BuildContext(device=device, dtype=dtype, workdir=scratch, dynamic_axes=axes, options=backend.options)
    try:
        if entry["meta"] is None:
            return backend.build(module, [], ctx)  # no payload: an eager-family backend, nothing to compile
        meta = dict(entry["meta"])
        if not use_payload:
            meta["file"] = None
        return backend.load(module, indir, meta, ctx)
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(
            f"{archive.source}: backend {name!r} could not load the payload of {what} ({type(exc).__name__}: {exc}); "
            f"{archive.hint}"
        ) from exc
