"""What a built backend depends on beyond its spec: the rule that makes reusing a build sound.

A build (an AOTInductor package, an ONNX graph, a TensorRT engine, inductor's compile cache) is
loaded instead of rebuilt only when its key matches, and the key covers everything that can change
what the build computes or how fast it runs:

1. **The user's code the model can reach**, by file *content* less comments and blank lines (a
   Python file's tokens; a comment-only change is the same work): the files of the modules that
   define the model's classes (every class in every submodule's MRO), of every function, class,
   module or instance of a user class those modules' globals hold, of the model's own attributes
   (``self.act = helpers.gelu``) and hooks, of the parent packages, transitively. "User" means a
   file outside the installed roots (stdlib, site-packages, dist-packages) and outside aitune-ci.
   A slowdown injected into a helper in another user module changes the key. Content, not path or
   module name: the PR's base, imported from a git worktree under ``aitune_base.*`` names, gets
   the key the nightly got for the same code in the main checkout, and so reuses its builds.
   With it, the value of every environment variable that code names literally
   (``os.environ["X"]``, ``os.environ.get("X")``, ``os.getenv("X")``): a model whose
   ``forward`` reads a flag from the environment is rebuilt when the flag changes.
2. **The model as built**: class, module types, state names/shapes/dtypes, a digest of the
   weights' values at the run dtype, and every plain attribute of every submodule
   (``self.eps = 1e-5``, ``self.fast_path = False``; tensors kept as plain attributes by value).
3. **The inputs**: the samples' signatures *and* values, the dtype, the device type, the dynamic
   axes the build is given, the submodule path (module-level tuning).
4. **The backend**: name, class and options.
5. **The process state a compiler reads**: ``torch._inductor``, ``torch._dynamo`` and
   ``torch._functorch`` config values that differ from their defaults (custom passes by type and
   ``uuid()``), the default dtype, matmul precision (both the old and the new ``fp32_precision``
   setting, which inductor's cache key hashes), TF32/cuDNN/determinism flags, the CPU thread
   count on a CPU run, and the environment variables in :func:`relevant_env` (``TORCH*``,
   ``PYTORCH_*``, ``CUDA_*``, ``CUBLAS*``, ``CUDNN_*``, ``TRITON_*``, ``NVIDIA_TF32_OVERRIDE``,
   ``CC``/``CXX``, ``AITUNE_*``), less locations, logging and device selection.
6. **The environment**: hardware key, GPU, driver, torch, CUDA, cuDNN, Python and every backend
   library's version (``registry.fingerprint``), the aitune-ci version, and by content
   aitune-ci's files that shape a build (its backends; how samples and dynamic axes reach them),
   so an editable install rebuilds when a backend's code changes.

Not covered, so ``--aitune-rebuild`` is the answer after such a change: code reached only through
an import inside a function body that no global or parent package exposes, an environment
variable whose name is computed rather than written out, state read from files
or the network at call time, and compilers found on ``PATH`` that are not named by ``CC``/``CXX``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
import sysconfig
import tokenize
import types
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch

from aitune_ci.digests import samples_sha256

__all__ = [
    "aitune_code_sha256",
    "model_attributes",
    "relevant_env",
    "torch_state",
    "user_code",
]

#: Environment variable prefixes that can change what a compiler produces.
_ENV_PREFIXES = ("TORCH", "PYTORCH_", "CUDA_", "CUBLAS", "CUDNN_", "TRITON_", "AITUNE_")
_ENV_NAMES = frozenset({"NVIDIA_TF32_OVERRIDE", "CC", "CXX"})
#: ...less these: where caches and logs go, how much is logged, which device a worker sees.
_ENV_IGNORED = frozenset(
    {
        "TORCH_LOGS",
        "TORCH_LOGS_OUT",
        "TORCH_LOGS_FORMAT",
        "TORCH_TRACE",
        "TORCH_COMPILE_DEBUG",
        "TORCH_SHOW_CPP_STACKTRACES",
        "TORCH_CPP_LOG_LEVEL",
        "TORCHINDUCTOR_COMPILE_THREADS",
        "TORCHINDUCTOR_WORKER_START",
        "TORCHINDUCTOR_FX_GRAPH_CACHE",
        "TORCHINDUCTOR_AUTOGRAD_CACHE",
        "TORCHINDUCTOR_FORCE_DISABLE_CACHES",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "CUDA_LAUNCH_BLOCKING",
        "AITUNE_AOTI_PROBE",
        "AITUNE_BUILD_KEY_DEBUG",
    }
)
_ENV_IGNORED_SUFFIXES = ("_DIR", "_HOME", "_PATH", "_ROOT", "_FILE", "_CACHE_MAX_GB")

#: Inductor config keys that change how a compile runs, not what it produces.
_CONFIG_IGNORED = frozenset({"compile_threads", "worker_start_method", "fx_graph_cache", "autotune_local_cache"})
_CONFIG_IGNORED_PREFIXES = ("trace.", "test_configs.")

#: nn.Module attributes that are not behaviour: the state (hashed by value elsewhere) and train/eval.
_MODULE_SKIP = frozenset({"_parameters", "_buffers", "_modules", "training"})


def relevant_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment variables a build key covers (pure)."""
    out = {}
    for name, value in environ.items():
        if name in _ENV_IGNORED or name.endswith(_ENV_IGNORED_SUFFIXES):
            continue
        if name in _ENV_NAMES or name.startswith(_ENV_PREFIXES):
            out[name] = value
    return dict(sorted(out.items()))


def _non_default_config(module: Any) -> dict[str, Any]:
    """A torch config module's values that differ from their defaults (JSON-able by ``repr``)."""
    try:
        portable = module.save_config_portable()
    except Exception:  # a torch without the config API: nothing to add
        return {}
    out: dict[str, Any] = {}
    for name, value in portable.items():
        if name in _CONFIG_IGNORED or name.startswith(_CONFIG_IGNORED_PREFIXES):
            continue
        entry = getattr(module, "_config", {}).get(name)
        try:
            # By value: a config patched to its default and back (torch.onnx.export does) is still default.
            if entry is not None and bool(value == entry.default):
                continue
        except Exception:
            pass
        out[name] = _plain(value)
    # Custom graph passes are left out of the portable config (callables), but change the graph.
    for name in sorted(getattr(module, "_save_config_ignore", ()) or ()):
        try:
            value = getattr(module, name) if "." not in name else module.get_config_copy().get(name)
        except Exception:
            continue
        entry = getattr(module, "_config", {}).get(name)
        try:
            if value is None or (entry is not None and bool(value == entry.default)):
                continue
        except Exception:
            pass
        out[name] = _callable_name(value)
    return dict(sorted(out.items()))


def _callable_name(value: Any) -> str:
    uuid = getattr(value, "uuid", None)
    try:
        extra = f"#{uuid()}" if callable(uuid) else ""
    except Exception:
        extra = ""
    target = value if isinstance(value, (types.FunctionType, type)) else type(value)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}{extra}"


def torch_state(device: torch.device) -> dict[str, Any]:
    """The process-wide torch settings a compile reads (see the module docstring, item 5)."""
    state: dict[str, Any] = {
        # A config module nobody imported holds its defaults (its env vars are covered apart), and
        # importing torch._dynamo costs seconds: read only those already imported.
        **{
            part: _non_default_config(sys.modules[f"torch._{part}.config"])
            if f"torch._{part}.config" in sys.modules
            else {}
            for part in ("inductor", "dynamo", "functorch")
        },
        "default_dtype": str(torch.get_default_dtype()),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cuda_matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        # Inductor's FX cache key hashes this setting, and it does not follow the precision back:
        # set_float32_matmul_precision("medium") and then "highest" leave it "ieee" where a fresh
        # process has "none", so a build made after that misses its own cache when another process
        # loads it (torch >= 2.9; absent before).
        "cuda_matmul_fp32_precision": getattr(torch.backends.cuda.matmul, "fp32_precision", None),
        "cuda_fp16_reduced": bool(torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction),
        "cuda_bf16_reduced": bool(torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction),
        "cudnn": [
            bool(torch.backends.cudnn.enabled),
            bool(torch.backends.cudnn.allow_tf32),
            bool(torch.backends.cudnn.benchmark),
            bool(torch.backends.cudnn.deterministic),
        ],
    }
    if device.type == "cpu":
        state["cpu_threads"] = torch.get_num_threads()  # CPU kernels specialise on it
    return state


# --- the user's code ---------------------------------------------------------------------------


def _installed_roots() -> tuple[str, ...]:
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    return tuple(os.path.realpath(p) + os.sep for p in paths)


_AITUNE_ROOT = os.path.realpath(Path(__file__).resolve().parents[1]) + os.sep


def _user_file(module: types.ModuleType, installed: tuple[str, ...]) -> str | None:
    """The real path of a user module's file; None for installed, built-in and aitune-ci modules."""
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file:
        return None
    path = os.path.realpath(file)
    parts = path.split(os.sep)
    if path.startswith(installed) or path.startswith(_AITUNE_ROOT) or "site-packages" in parts:
        return None
    if "dist-packages" in parts or not os.path.isfile(path):
        return None
    return path


class _UserModules:
    """Every user module loaded, indexed so an object leads to the module that defines it.

    Objects lead by identity, never by module name: the base's modules (``aitune_base.*``) and the
    head's carry the same ``__name__`` and define classes of the same names.
    """

    def __init__(self) -> None:
        installed = _installed_roots()
        self.file: dict[int, str] = {}  # id(module) -> file
        self.by_globals: dict[int, types.ModuleType] = {}  # id(module.__dict__) -> module
        self.by_file: dict[str, types.ModuleType] = {}
        self.owner: dict[int, types.ModuleType] = {}  # id(class) -> module defining it
        for module in list(sys.modules.values()):
            if not isinstance(module, types.ModuleType):
                continue
            path = _user_file(module, installed)
            if path is None:
                continue
            namespace = vars(module)
            self.file[id(module)] = path
            self.by_globals[id(namespace)] = module
            self.by_file.setdefault(path, module)
            name = namespace.get("__name__")
            for value in list(namespace.values()):
                if isinstance(value, type) and getattr(value, "__module__", None) == name:
                    self.owner.setdefault(id(value), module)

    def module_of(self, obj: Any, depth: int = 0) -> types.ModuleType | None:
        """The user module ``obj`` (a module, function, class or instance of a user class) comes from."""
        if isinstance(obj, types.ModuleType):
            return obj if id(obj) in self.file else None
        function = _function_of(obj)
        if function is not None:
            return self.by_globals.get(id(getattr(function, "__globals__", None)))
        if isinstance(obj, type):
            for value in list(vars(obj).values()):
                inner = _function_of(value)
                if inner is not None and id(getattr(inner, "__globals__", None)) in self.by_globals:
                    return self.by_globals[id(inner.__globals__)]
            return self.owner.get(id(obj))
        if depth == 0 and not isinstance(obj, (str, bytes, int, float, bool, type(None), torch.Tensor)):
            return self.module_of(type(obj), depth + 1)
        return None

    def parent(self, module: types.ModuleType) -> types.ModuleType | None:
        """The package whose ``__init__`` ran to import ``module`` (found by file, not by name)."""
        path = Path(self.file[id(module)])
        folder = path.parent.parent if path.stem == "__init__" else path.parent
        return self.by_file.get(os.path.realpath(folder / "__init__.py"))


def _function_of(obj: Any) -> Any:
    """The plain function behind a function, method, static/class method, property or partial."""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    elif isinstance(obj, property):
        obj = obj.fget
    elif isinstance(obj, partial):
        obj = obj.func
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    return obj if isinstance(obj, types.FunctionType) else None


def _seeds(model: torch.nn.Module) -> Iterable[Any]:
    """What the model itself leads to: its classes, its plain attributes and its hooks."""
    for module in model.modules():
        yield from type(module).__mro__
        for name, value in vars(module).items():
            if name in _MODULE_SKIP:
                continue
            if isinstance(value, Mapping):
                yield from list(value.values())
            elif isinstance(value, (list, tuple)):
                yield from value
            else:
                yield value


def user_code(model: torch.nn.Module, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the user's code adds to a key: ``files``, the sha256 of every user file the model can
    reach (sorted; see the module docstring), and ``env``, the value of every environment variable
    those files name in ``os.environ[...]``, ``os.environ.get(...)`` or ``os.getenv(...)``."""
    env = os.environ if environ is None else environ
    files = [_file_info(path) for path in _reachable_files(model)]
    names = sorted({name for _, found in files for name in found})
    return {"files": sorted({digest for digest, _ in files}), "env": {name: env.get(name) for name in names}}


def _reachable_files(model: torch.nn.Module) -> list[str]:
    """The real paths of the user files the model can reach."""
    index = _UserModules()
    found: dict[int, types.ModuleType] = {}
    frontier: list[types.ModuleType] = []

    def add(obj: Any) -> None:
        try:
            module = index.module_of(obj)
        except Exception:  # an exotic object whose attributes raise: it leads nowhere
            return
        if module is not None and id(module) not in found:
            found[id(module)] = module
            frontier.append(module)

    for seed in _seeds(model):
        add(seed)
    while frontier:
        module = frontier.pop()
        parent = index.parent(module)
        if parent is not None:
            add(parent)
        for value in list(vars(module).values()):
            add(value)
    return sorted({index.file[id(m)] for m in found.values()})


#: ``os.environ["X"]``, ``os.environ.get("X")``, ``environ.get('X')``, ``os.getenv("X")``.
_ENV_READ = re.compile(rb"""(?:environ(?:\.get)?\s*[\[(]|getenv\s*\()\s*[rb]?["']([A-Za-z_][A-Za-z0-9_]*)["']""")

_file_infos: dict[tuple[str, int, int], tuple[str, frozenset[str]]] = {}


def _file_info(path: str) -> tuple[str, frozenset[str]]:
    """A file's content digest and the environment variables it names, remembered while its size and mtime hold."""
    try:
        stat = os.stat(path)
    except OSError:
        return hashlib.sha256(f"missing:{path}".encode()).hexdigest(), frozenset()
    key = (path, stat.st_mtime_ns, stat.st_size)
    info = _file_infos.get(key)
    if info is None:
        with open(path, "rb") as fh:
            data = fh.read()
        names = frozenset(m.decode() for m in _ENV_READ.findall(data))
        info = _file_infos[key] = (_code_digest(path, data), names)
    return info


#: Tokens that carry no code: comments, blank lines, and layout (an indent's width, a line ending).
_NO_CODE = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.ENCODING})
_LAYOUT = frozenset({tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE})


def _code_digest(path: str, data: bytes) -> str:
    """A Python file's digest by its tokens, less comments and blank lines; other files by bytes.

    A PR that only adds a comment, a blank line or re-indents then does the same work as its base,
    so its builds and results are reused (a comment-only PR on the H200 rebuilt resnet50's
    AOTInductor package, 77 s, for nothing). Docstrings and every other token still count. A file
    that does not tokenize is taken by its bytes.
    """
    if not path.endswith(".py"):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256(b"tokens\0")
    try:
        for tok in tokenize.tokenize(io.BytesIO(data).readline):
            if tok.type in _NO_CODE:
                continue
            text = "" if tok.type in _LAYOUT else tok.string
            digest.update(f"{tok.type}:{text}\0".encode())
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError):
        return hashlib.sha256(data).hexdigest()
    return digest.hexdigest()


def _file_sha256(path: str) -> str:
    return _file_info(path)[0]


_aitune_digest: list[str] = []


#: aitune-ci's files that shape a build: the backends, and how samples and dynamic axes reach them.
_BUILD_CODE = ("backends/*.py", "dynamic.py", "samples.py", "modules.py")


def aitune_code_sha256() -> str:
    """A digest of aitune-ci's files that shape a build (:data:`_BUILD_CODE`), by relative path and content."""
    if not _aitune_digest:
        root = Path(_AITUNE_ROOT)
        digest = hashlib.sha256()
        for path in sorted(p for pattern in _BUILD_CODE for p in root.glob(pattern)):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(_file_sha256(str(path)).encode())
        _aitune_digest.append(digest.hexdigest())
    return _aitune_digest[0]


# --- the model's plain attributes --------------------------------------------------------------


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-able description of an attribute value: its value where plain, its kind otherwise."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (torch.dtype, torch.device, torch.Size)):
        return str(value)
    if isinstance(value, torch.Tensor):
        return {"tensor": samples_sha256([((value,), {})])}
    if isinstance(value, (list, tuple)) and depth < 3:
        return [_plain(v, depth + 1) for v in list(value)[:256]]
    if isinstance(value, (set, frozenset)) and depth < 3:
        return sorted(repr(_plain(v, depth + 1)) for v in value)
    if isinstance(value, Mapping) and depth < 3:
        return {str(k): _plain(v, depth + 1) for k, v in list(value.items())[:256]}
    if isinstance(value, (types.FunctionType, types.MethodType, type, partial, staticmethod, classmethod)):
        function = _function_of(value)
        target = function if function is not None else value
        return f"<{getattr(target, '__qualname__', type(target).__qualname__)}>"
    if isinstance(value, torch.nn.Module):
        return f"<module {type(value).__qualname__}>"
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def model_attributes(model: torch.nn.Module) -> list[Any]:
    """Every submodule's plain attributes (not its parameters, buffers or children), described by :func:`_plain`.

    Hooks are listed by function (their handle ids count up across the process, so they are dropped).
    """
    out = []
    for path, module in model.named_modules():
        attributes = {}
        for name, value in sorted(vars(module).items()):
            if name in _MODULE_SKIP:
                continue
            if "hook" in name and isinstance(value, Mapping):
                attributes[name] = [_plain(v) for v in value.values()]
            else:
                attributes[name] = _plain(value)
        out.append([path, attributes])
    return out
