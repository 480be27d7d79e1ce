"""AOTInductor: ``torch.export`` then compile to a ``.pt2`` package that loads with no compile.

Dynamic axes become ``torch.export.Dim`` objects, one per axis name (so two inputs sharing the
name ``batch`` must agree), from 1 to ``dim_max`` (unbounded by default). A model that
specialises a named axis makes export raise; the build then retries with ``Dim.AUTO``, which
lets export keep what it can dynamic, and records that in the metadata.

The package carries its own weights and machine code for one device type (and CPU ISA or GPU
architecture): a payload from another machine must be rebuilt, not loaded.

Packages are built with a C++ compiler that links libstdc++ dynamically (``_cxx_runtime``): a
compiler that puts a static copy of libstdc++ into every package's ``wrapper.so`` makes every
package, CPU or CUDA, even one ``nn.Linear``, segfault on load in that copy's ``std::regex`` locale
code. When torch's own choice is such a compiler, the build uses a sound one and warns, or fails
with the reason if none is found. The ``cxx`` option (or ``AITUNE_AOTI_CXX``) names the compiler
outright.

A load skips the CPU instruction-set probe torch's own loader runs to word a warning (tens of
seconds of test builds on a machine with an empty inductor cache; ``_load_package_here``), and
warns, as torch did, about a CUDA package built for another compute capability.

Until one package has loaded in a child process, packages are loaded there first, since a loader
segfault would end the whole run instead of failing one backend.
One good probe per process and device type is taken to mean the loader works here, and it is
remembered on disk (``~/.cache/aitune-ci/``, keyed by torch version, device and GPU), so later
processes on the same machine load packages directly, with no child process: a probe costs a
Python start (seconds), which would otherwise dominate every fresh-process artifact load.
``AITUNE_AOTI_PROBE=always`` probes anyway; ``never`` trusts the loader.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.utils._pytree as pytree

from aitune_ci.backends._cxx_runtime import classify_link, inspect_compiler, pick_compiler, runtime_libstdcxx
from aitune_ci.backends.base import Backend, BuildContext, Payload
from aitune_ci.backends.inductor import (
    axes_from_json,
    axes_to_json,
    check_dynamic_axes,
    forward_signature,
    inductor_toolchain,
    iter_tensors,
    payload_file,
)
from aitune_ci.backends.registry import register_backend
from aitune_ci.errors import BackendError
from aitune_ci.samples import Sample

__all__ = [
    "PACKAGE_FILE",
    "AOTIBackend",
    "AOTICompiled",
    "check_package_libraries",
    "compute_capability_problem",
    "export_dynamic_shapes",
    "package_compiler",
    "probe_load",
]

#: The package file ``build`` writes into ``ctx.workdir`` and ``save`` copies.
PACKAGE_FILE = "model.pt2"

_log = logging.getLogger(__name__)
#: (torch's compiler, the one used instead) already announced in this process
_ANNOUNCED: set[tuple[str, str]] = set()


def export_dynamic_shapes(
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    *,
    auto: bool = False,
    dim_max: int | None = None,
) -> Any:
    """``dynamic_shapes`` for ``torch.export.export`` from ``{input_path: {dim: name}}``.

    Returns None for static shapes, else a ``torch.export.ShapesCollection`` keyed by the sample's
    tensors (export maps them back onto its args/kwargs structure). With ``auto``, every dynamic
    axis is ``Dim.AUTO`` instead of a named ``Dim``.
    """
    if not dynamic_axes:
        return None
    dims: dict[str, Any] = {}

    def dim_for(name: str) -> Any:
        if auto:
            return torch.export.Dim.AUTO
        if name not in dims:
            dims[name] = torch.export.Dim(_identifier(name), min=1, max=dim_max)
        return dims[name]

    shapes = torch.export.ShapesCollection()
    for path, tensor in iter_tensors(args, kwargs):
        axes = dynamic_axes.get(path)
        if axes:
            shapes[tensor] = {dim % tensor.dim(): dim_for(name) for dim, name in axes.items()}
    return shapes


def _identifier(name: str) -> str:
    """A Dim name must be a Python identifier; ``seq-len`` becomes ``seq_len``."""
    ident = re.sub(r"\W", "_", name)
    return ident if ident.isidentifier() else f"d_{ident}"


#: The model name ``aoti_compile_and_package`` gives a package's single model.
_MODEL_NAME = "model"

# The child loads exactly as this process would (_load_package_here); the loader's constructor is
# where a bad package's library is opened, and so where the crash the probe guards against happens.
_PROBE = """\
import sys
from pathlib import Path
import torch
from aitune_ci.backends.aoti import _load_package_here
_load_package_here(Path(sys.argv[1]), torch.device(sys.argv[2]))
"""


def probe_load(package: Path, device: torch.device, timeout_s: float = 300) -> None:
    """Load ``package`` in a child process; raise BackendError if that crashes or fails.

    Costs a Python start and a torch import (seconds); it turns a loader segfault into an error.
    """
    # The child imports this same aitune_ci, installed or not.
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, str(package), str(device)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"loading {package} in a probe process took over {timeout_s:.0f} s") from exc
    if proc.returncode < 0:
        try:
            how = signal.Signals(-proc.returncode).name
        except ValueError:
            how = f"signal {-proc.returncode}"
        hint = _compiler_hint()
        raise BackendError(
            f"torch's AOTInductor package loader crashed ({how}) loading {package} in a probe process; "
            f"torch {torch.__version__}'s AOTInductor loader is broken on this machine. "
            f"Use another backend here, or another torch build.{hint}"
        )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise BackendError(f"torch's AOTInductor package loader failed on {package}: {tail[0]}")


class AOTICompiled:
    """A loaded AOTInductor package, callable like the module, returning its output structure.

    Some torch versions return the package's outputs as a flat list; the exported output spec
    rebuilds the original pytree (a dict stays a dict). Outputs already structured pass through
    unchanged, since flattening them gives the same leaves.
    """

    def __init__(
        self,
        runner: Callable[..., Any],
        *,
        package_path: Path,
        out_spec: pytree.TreeSpec | None,
        dynamic_axes: Mapping[str, Mapping[int, str]],
        dim_mode: str,
        signature: Any = None,
    ) -> None:
        self.runner = runner
        self.package_path = Path(package_path)
        self.out_spec = out_spec
        self.dynamic_axes = {path: dict(dims) for path, dims in dynamic_axes.items()}
        #: ``named`` (one Dim per axis name), ``auto`` (Dim.AUTO fallback) or ``static``.
        self.dim_mode = dim_mode
        if signature is not None:
            self.__signature__ = signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.runner(*args, **kwargs)
        if self.out_spec is None:
            return out
        leaves = pytree.tree_leaves(out)
        if len(leaves) != self.out_spec.num_leaves:
            return out
        return pytree.tree_unflatten(leaves, self.out_spec)


@register_backend("aoti")
class AOTIBackend(Backend):
    """AOTInductor ``.pt2`` packages: compiled once, loaded later with no compilation.

    Options:
        dim_max: upper bound of every dynamic axis (default: unbounded).
        inductor_configs: passed to ``aoti_compile_and_package`` (e.g. ``{"max_autotune": True}``).
        probe: load each package in a child process first (default True; see the module docstring).
        cxx: the C++ compiler to build packages with (default: torch's choice, ``$CXX`` or ``g++``,
            unless it links libstdc++ statically or for a newer libstdc++ than this process runs; also
            ``AITUNE_AOTI_CXX``).
    """

    precision = "fp32"
    payload = Payload.NATIVE
    libraries = ("triton",)

    def __init__(
        self,
        dim_max: int | None = None,
        inductor_configs: Mapping[str, Any] | None = None,
        probe: bool = True,
        cxx: str | None = None,
    ) -> None:
        options: dict[str, Any] = {}
        if dim_max is not None:
            if not isinstance(dim_max, int) or dim_max < 2:
                raise BackendError(f"aoti option dim_max must be an int >= 2, got {dim_max!r}")
            options["dim_max"] = dim_max
        if inductor_configs:
            options["inductor_configs"] = dict(inductor_configs)
        if not probe:
            options["probe"] = False
        if cxx is not None:
            if not isinstance(cxx, str) or not cxx:
                raise BackendError(f"aoti option cxx must name a C++ compiler (g++, /usr/bin/g++), got {cxx!r}")
            options["cxx"] = cxx
        super().__init__(**options)

    @property
    def uses_inductor(self) -> bool:
        return True

    @property
    def compiles_cxx(self) -> bool:
        return True

    def cxx_compiler(self) -> str | None:
        return package_compiler(self.options.get("cxx"))

    @property
    def loads_as_built(self) -> bool:
        # A build ends in the very load a cached package gets (``_load_package``). On the H200 a
        # loaded ResNet-50 package over the fresh one read 1.0002 (1.0000-1.0005, 6 paired A/As;
        # reports/h200/aoti_fresh_vs_loaded.md).
        return True

    def available(self, device: torch.device | str = "cpu") -> tuple[bool, str]:
        ok, reason = super().available(device)
        if not ok:
            return ok, reason
        if not hasattr(torch._inductor, "aoti_compile_and_package"):
            return False, f"torch {torch.__version__} has no torch._inductor.aoti_compile_and_package; needs torch>=2.6"
        return inductor_toolchain(device)

    def build(self, module: torch.nn.Module, samples: Sequence[Sample], ctx: BuildContext) -> Callable[..., Any]:
        """Export on the first sample, compile the package, load it, and run every sample once."""
        check_dynamic_axes(samples, ctx.dynamic_axes)
        args, kwargs = samples[0]
        ep, dim_mode = self.export(module, args, kwargs, ctx.dynamic_axes)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        package = ctx.workdir / PACKAGE_FILE
        # aoti_compile_and_package writes config.aot_inductor.metadata process-wide, which changes the
        # FX-graph cache key of every later inductor compile; a config patch restores it on exit.
        from torch._inductor import config as inductor_config

        compiler = package_compiler(self.options.get("cxx"))
        patch: dict[str, Any] = {"aot_inductor.metadata": dict(inductor_config.aot_inductor.metadata)}
        if compiler is not None:
            patch["cpp.cxx"] = (compiler,)  # alone: a leading None lets torch swap in conda's g++
        with torch.no_grad(), inductor_config.patch(patch):
            torch._inductor.aoti_compile_and_package(
                ep, package_path=str(package), inductor_configs=dict(self.options.get("inductor_configs", {}))
            )
        built = AOTICompiled(
            self._load_package(package, ctx.device),
            package_path=package,
            out_spec=ep.call_spec.out_spec,
            dynamic_axes=ctx.dynamic_axes,
            dim_mode=dim_mode,
            signature=forward_signature(module),
        )
        for index, (s_args, s_kwargs) in enumerate(samples):
            try:
                built(*s_args, **s_kwargs)
            except Exception as exc:
                shapes = {path: tuple(t.shape) for path, t in iter_tensors(s_args, s_kwargs)}
                raise BackendError(
                    f"the AOTInductor package (exported on sample 0, dynamic axes {dict(ctx.dynamic_axes) or 'none'}, "
                    f"{dim_mode} dims) fails on sample {index} with input shapes {shapes}: {exc}. "
                    "Declare the axes that vary as dynamic_axes."
                ) from exc
        return built

    def export(
        self,
        module: torch.nn.Module,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        dynamic_axes: Mapping[str, Mapping[int, str]],
    ) -> tuple[torch.export.ExportedProgram, str]:
        """``torch.export`` with named dims, falling back to ``Dim.AUTO``; returns the program and the dim mode."""
        dim_max = self.options.get("dim_max")
        from torch._dynamo.exc import UserError

        shapes = export_dynamic_shapes(args, kwargs, dynamic_axes, dim_max=dim_max)
        with torch.no_grad():
            if shapes is None:
                return torch.export.export(module, tuple(args), dict(kwargs)), "static"
            try:
                return torch.export.export(module, tuple(args), dict(kwargs), dynamic_shapes=shapes), "named"
            except UserError as named_error:
                # Usually a constraint violation: the model fixes or relates an axis declared free.
                auto = export_dynamic_shapes(args, kwargs, dynamic_axes, auto=True)
                try:
                    return torch.export.export(module, tuple(args), dict(kwargs), dynamic_shapes=auto), "auto"
                except Exception:
                    raise named_error from None

    def save(self, built: Callable[..., Any], outdir: Path) -> dict[str, Any]:
        """Copy the ``.pt2`` package; the metadata carries the output structure and dynamic axes."""
        if not isinstance(built, AOTICompiled):
            raise BackendError(f"backend {self.name!r} can only save what its own build returned, not {type(built)!r}")
        outdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built.package_path, outdir / PACKAGE_FILE)
        return {
            "file": PACKAGE_FILE,
            "dynamic_axes": axes_to_json(built.dynamic_axes),
            "dim_mode": built.dim_mode,
            "out_spec": _dump_spec(built.out_spec),
            "torch": torch.__version__,
        }

    def load(
        self, module: torch.nn.Module, indir: Path, meta: Mapping[str, Any], ctx: BuildContext
    ) -> Callable[..., Any]:
        """Load the package as is: no export, no compile. ``module`` is unused (the package has its weights)."""
        package = payload_file(indir, meta.get("file", PACKAGE_FILE))
        out_spec = pytree.treespec_loads(meta["out_spec"]) if meta.get("out_spec") else None
        return AOTICompiled(
            self._load_package(package, ctx.device),
            package_path=package,
            out_spec=out_spec,
            dynamic_axes=axes_from_json(meta.get("dynamic_axes")),
            dim_mode=str(meta.get("dim_mode", "static")),
            signature=forward_signature(module),
        )

    def _load_package(self, path: Path, device: torch.device) -> Callable[..., Any]:
        check_package_libraries(path)  # before any probe: a known crash needs no child process to show it
        if self.options.get("probe", True) and device.type not in _LOADER_WORKS:
            mode = os.environ.get("AITUNE_AOTI_PROBE", "auto")
            marker = _probe_marker(device)
            if mode == "always" or (mode != "never" and not marker.exists()):
                probe_load(path, device)
                try:
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.write_text(f"an AOTInductor package loaded in a probe process: torch {torch.__version__}\n")
                except OSError:
                    pass  # a read-only home only costs the probe again next time
            _LOADER_WORKS.add(device.type)
        return _load_package_here(path, device)


def package_compiler(explicit: str | None = None) -> str | None:
    """The C++ compiler to build packages with; None keeps torch's own choice.

    Raises:
        BackendError: torch's choice links a static libstdc++ into shared libraries, or builds for a
            newer libstdc++ than this process runs, and no sound compiler was found.
    """
    chosen = explicit or os.environ.get("AITUNE_AOTI_CXX")
    if chosen:
        return chosen
    current = _torch_compiler()
    if current is None:
        return None  # inductor itself will say what is missing
    checked, replacement = pick_compiler(current)
    if checked is None or checked.ok:
        return None
    if replacement is None:
        raise BackendError(
            f"AOTInductor packages built here would crash this process when loaded: {checked.describe()}. "
            "Set CXX (or the aoti option cxx=..., or AITUNE_AOTI_CXX) to a C++ compiler that links libstdc++ "
            "dynamically and is not newer than the libstdc++ Python runs, such as the system g++."
        )
    if (current, replacement.compiler) not in _ANNOUNCED:
        # A decision, not a problem: a progress line once per process (pytest shows the library's INFO
        # records as progress lines; the CLI prints them), not a warning for every build.
        _ANNOUNCED.add((current, replacement.compiler))
        _log.info(
            "building AOTInductor packages with %s, not %s: %s, and packages built that way crash on load. "
            "Set AITUNE_AOTI_CXX to choose the compiler yourself.",
            replacement.compiler,
            current,
            checked.describe(),
        )
    return replacement.compiler


def _torch_compiler() -> str | None:
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return str(get_cpp_compiler())
    except Exception:
        return None


def _compiler_hint() -> str:
    """What a loader crash may owe to the compiler that built the package (for the error text)."""
    compiler = os.environ.get("AITUNE_AOTI_CXX") or _torch_compiler()
    if compiler is None:
        return ""
    checked = inspect_compiler(compiler)
    if checked is None:
        return ""
    return (
        f" Packages here are built with {compiler} (libstdc++ linked: {checked.links_libstdcxx}; its libstdc++: "
        f"{checked.compiler_libstdcxx}); this process runs {checked.runtime_libstdcxx}. A second libstdc++ in the "
        "process is the first thing to rule out (set AITUNE_AOTI_CXX to another compiler)."
    )


#: Device types whose package loader a probe has seen work in this process.
_LOADER_WORKS: set[str] = set()


def _probe_marker(device: torch.device) -> Path:
    """Where a good probe is remembered for this torch build, device type and GPU model."""
    parts = [torch.__version__, str(torch.version.cuda), device.type, platform.machine()]
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aitune-ci"
    return root / f"aoti-loader-ok-{device.type}-{key}"


def check_package_libraries(path: Path, head_bytes: int = 8 << 20) -> None:
    """Refuse a package whose native library carries its own static libstdc++ (loading it crashes).

    The dynamic section and symbol names sit at the start of a shared library, so the first
    ``head_bytes`` of each ``.so`` member are enough (weights may follow; they are not read).
    """
    if runtime_libstdcxx() is None:
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".so"):
                    continue
                with archive.open(info) as f:
                    if classify_link(f.read(head_bytes)) == "static":
                        raise BackendError(
                            f"{path} holds {info.filename}, which carries its own static copy of libstdc++: loading it "
                            "next to this process's shared libstdc++ crashes (a segfault in std::regex). It was built "
                            "by a compiler whose libstdc++.so could not be found. Rebuild the package here (pytest "
                            "--aitune --aitune-update), where aoti picks a compiler that links libstdc++ dynamically."
                        )
    except (zipfile.BadZipFile, OSError):
        return  # the loader reports a missing or damaged package in its own words


def _load_package_here(path: Path, device: torch.device) -> Callable[..., Any]:
    """Load as ``torch._inductor.aoti_load_package`` does, minus its CPU instruction-set probe.

    torch's loader compares the package's recorded device information with this machine's, only to
    log a warning, and its ``get_device_information`` runs inductor's ISA probe to do so: a C++ test
    build and load per candidate ISA (the builds are kept in the inductor cache folder; the loads
    are not), which with an empty inductor cache can take longer than building the package did.
    The package's code is already compiled: a CPU payload built for features this CPU lacks is
    refused before this point (``store.artifact.safety``), and a CUDA package built for another
    compute capability is warned about here, as torch did.
    """
    index = device.index if device.type == "cuda" and device.index is not None else -1  # -1: torch's default
    try:
        from torch._inductor.package.package import AOTICompiledModel

        loader = torch._C._aoti.AOTIModelPackageLoader
        metadata = loader.load_metadata_from_package(str(path), _MODEL_NAME)
    except (ImportError, AttributeError):  # another torch's layout: its own loader, probe and all
        return torch._inductor.aoti_load_package(str(path), **({"device_index": index} if index >= 0 else {}))
    if device.type == "cuda":
        problem = compute_capability_problem(dict(metadata), _compute_capability(device))
        if problem:
            # A warning, as torch gives: a package with PTX (emit_multi_arch_kernel) may still run.
            warnings.warn(
                f"aitune: {path}: {problem} ({torch.cuda.get_device_name(device)}); its kernels may not run "
                "here. Rebuild the package on this GPU (pytest --aitune --aitune-update).",
                stacklevel=2,
            )
    return AOTICompiledModel(loader(str(path), _MODEL_NAME, False, 1, index))


def compute_capability_problem(metadata: Mapping[str, str], here: str | None) -> str | None:
    """Why a CUDA package's kernels may not run on a GPU of compute capability ``here`` (None: same GPU kind).

    ``metadata`` is the package's recorded device information (``AOTI_COMPUTE_CAPABILITY``: ``"90"``
    for sm_90); either side unknown is not a mismatch.
    """
    built = metadata.get("AOTI_COMPUTE_CAPABILITY")
    if not built or not here or built == here:
        return None
    return f"the package was built for CUDA compute capability {built}, and this GPU has {here}"


def _compute_capability(device: torch.device) -> str | None:
    """This GPU's compute capability, written as torch records it in a package (``"90"``; ROCm: ``gfx942``)."""
    try:
        if torch.version.hip is not None:
            return str(torch.cuda.get_device_properties(device).gcnArchName).split(":", 1)[0]
        major, minor = torch.cuda.get_device_capability(device)
    except Exception:
        return None
    return str(major * 10 + minor)


def _dump_spec(spec: pytree.TreeSpec | None) -> str | None:
    """The output spec as JSON, or None for types pytree cannot serialize (the package still has its own)."""
    if spec is None:
        return None
    try:
        return pytree.treespec_dumps(spec)
    except Exception:
        return None
