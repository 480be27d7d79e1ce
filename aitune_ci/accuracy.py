"""Accuracy: compare every output leaf of a backend with the fp32 eager reference, and gate it.

Two layers. The pure layer (:func:`leaf_metrics`, :func:`default_tolerance`, :func:`gate_leaf`,
:func:`gate_description`) works on numpy arrays in float64 and never touches torch, so it is
testable in milliseconds. The torch layer (:func:`flatten_outputs`, :func:`compare_outputs`)
turns arbitrary output pytrees into named leaves and runs the pure layer on every sample.

Decisions worth knowing:

- NaN or Inf in the candidate where the reference is finite (or a finite candidate where the
  reference is not) always fails; the error there is unbounded, so max_abs is ``inf`` and SQNR
  ``-inf``. NaN at the same place in both, or the same signed Inf, counts as agreement (the
  model itself produces it, e.g. fully masked attention rows); those values still show in
  ``nan_count`` / ``inf_count`` and every other metric is computed on the finite elements.
- Integer and bool leaves (token ids, masks, argmax) must match exactly.
- ``max_rel`` divides by ``max(|ref|, 1e-3 · RMS(ref))``: a relative error next to a zero
  crossing measures nothing, so tiny reference values are clamped to a floor set by the leaf's
  own scale. It is reported, never gated (allclose carries the relative part of the gate).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aitune_ci.result import AccuracyReport, LeafMetrics
from aitune_ci.tolerance import Tolerance, ToleranceSpec, resolve_tolerance

__all__ = [
    "compare_outputs",
    "default_tolerance",
    "flatten_outputs",
    "gate_description",
    "gate_leaf",
    "leaf_metrics",
]

# Why these numbers (atol, rtol are elementwise: |cand - ref| <= atol + rtol·|ref|):
# - fp32: the design's 1e-4, far above fp32 round-off yet tight enough to catch a wrong kernel;
#   a reordered reduction that trips it still passes through the RMSE test (≤ 2× eager's error).
# - tf32: matmul inputs keep a 10-bit mantissa (unit round-off 4.9e-4, like fp16) with fp32
#   accumulation; 5e-3 is what PyTorch's own tf32 tests commonly allow (tf32_on_and_off(0.005)).
# - fp16 / bf16: torch.testing.assert_close's per-op defaults (fp16 1e-5/1e-3, bf16 1e-5/1.6e-2)
#   are for single ops and fail whole models: measured on CPU, a 16-32-8 MLP in fp16 violated
#   1e-5/1e-3 by 12× and a 256-wide MLP in bf16 violated 1e-5/1.6e-2 by 9×. With 1e-2 (fp16)
#   and 5e-2 (bf16) the same MLPs and a 3-conv CNN used at most 6% and 12% of the allowance,
#   headroom for deeper models; drift below the gate is caught by the baseline SQNR check.
#   The RMSE test (≤ 3×) rarely helps here: half precision's error is 10³× fp32's.
#   Deep models still break elementwise gates on a few outputs near zero: measured on an H100 GPU,
#   resnet50 in bf16 had max_abs 0.6 against 5e-2 + 5e-2·|ref| with SQNR 45.6 dB and cosine
#   0.99999, i.e. ordinary bf16 rounding. So a leaf is also close when its SQNR reaches a floor
#   set from the format's rounding error: one rounding gives ~53 dB (bf16, u = 2⁻⁸) and ~71 dB
#   (fp16 and tf32 inputs, u = 2⁻¹¹); whole models measured there (reports/h100/model_*.json)
#   gave bf16 41.9-45.6 dB (GPT-2, resnet50) and fp16 60.1-67.0 dB (GPT-2, resnet50, a
#   CNN+transformer). Floors of 35 and 45 dB leave 7-15 dB for deeper models, while a wrong
#   kernel or a dropped layer lands far below (< 20 dB).
# - int8 / fp8: elementwise closeness is meaningless for quantized weights; SQNR ≥ 25 dB and
#   cosine ≥ 0.99 (the design's gate).
_DEFAULTS: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-4, max_rmse_ratio=2.0),
    "tf32": Tolerance(atol=5e-3, rtol=5e-3, max_rmse_ratio=3.0, close_sqnr_db=45.0),
    "fp16": Tolerance(atol=1e-2, rtol=1e-2, max_rmse_ratio=3.0, close_sqnr_db=45.0),
    "bf16": Tolerance(atol=5e-2, rtol=5e-2, max_rmse_ratio=3.0, close_sqnr_db=35.0),
    "int8": Tolerance(min_sqnr_db=25.0, min_cosine=0.99),
    "fp8": Tolerance(min_sqnr_db=25.0, min_cosine=0.99),
}

#: Reference values below this fraction of the leaf's RMS are clamped to it for ``max_rel``.
_REL_FLOOR = 1e-3

_INF = math.inf


# --------------------------------------------------------------------------------------------
# Pure layer: numpy, float64
# --------------------------------------------------------------------------------------------


def default_tolerance(precision: str) -> Tolerance:
    """The gate a backend of ``precision`` gets when the user sets nothing.

    Raises:
        ValueError: for an unknown precision (the message lists the known ones).
    """
    try:
        return _DEFAULTS[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(_DEFAULTS)}") from None


def _effective(tolerance: Tolerance | None, precision: str) -> Tolerance:
    return (tolerance or Tolerance()).merged_over(default_tolerance(precision))


def _as_real(a: np.ndarray) -> np.ndarray:
    """Complex values compared as (real, imag) pairs; everything else as float64."""
    if a.dtype.kind == "c":
        return np.stack([a.real, a.imag], axis=-1).astype(np.float64)
    return a.astype(np.float64, copy=False)


def _failed_leaf(
    path: str, shape: tuple[int, ...], reason: str, nan_count: int, inf_count: int, sample_index: int
) -> LeafMetrics:
    """A leaf whose error is unbounded (shape or non-finite mismatch, non-numeric difference)."""
    return LeafMetrics(
        path=path,
        shape=shape,
        max_abs=_INF,
        max_rel=_INF,
        mean_abs=_INF,
        cosine=math.nan,
        sqnr_db=-_INF,
        rmse_ratio=None,
        nan_count=nan_count,
        inf_count=inf_count,
        passed=False,
        reason=reason,
        worst_sample=sample_index,
        allclose_ratio=_INF,
    )


def _object_leaf(path: str, reference: Any, candidate: Any, sample_index: int) -> LeafMetrics:
    """Non-numeric leaves (strings, arbitrary objects) must be equal."""
    try:
        equal = bool(np.all(reference == candidate))
    except Exception:  # an object whose == raises or returns something odd is not comparable
        equal = False
    if not equal:
        return _failed_leaf(
            path, (), f"non-numeric leaf differs: {candidate!r:.60} vs reference {reference!r:.60}", 0, 0, sample_index
        )
    return LeafMetrics(path, (), 0.0, 0.0, 0.0, 1.0, _INF, None, 0, 0, True, "", sample_index, 0.0)


def _rmse(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


def _nonfinite_divergence(r: np.ndarray, c: np.ndarray) -> str:
    """Why the candidate's NaN/Inf disagree with the reference's; ``""`` when every one agrees."""
    r_fin, c_fin = np.isfinite(r), np.isfinite(c)
    agree = (np.isnan(r) & np.isnan(c)) | (np.isinf(r) & (r == c))
    diverged = ~(r_fin & c_fin) & ~agree
    if not diverged.any():
        return ""
    bad_nan = int(np.count_nonzero(np.isnan(c) & r_fin))
    bad_inf = int(np.count_nonzero(np.isinf(c) & r_fin))
    other = int(np.count_nonzero(diverged)) - bad_nan - bad_inf
    parts = []
    if bad_nan or bad_inf:
        parts.append(f"{bad_nan} NaN and {bad_inf} Inf where the reference is finite")
    if other:
        parts.append(f"{other} element(s) where the reference is NaN/Inf and the candidate is not the same")
    return "candidate has " + "; ".join(parts)


def _exact_mismatch(ref: np.ndarray, cand: np.ndarray) -> str:
    """Why an integer or bool leaf fails (they must match exactly); ``""`` when it matches or is float."""
    if ref.dtype.kind not in "bui":
        return ""
    mismatches = int(np.count_nonzero(ref != cand))
    if not mismatches:
        return ""
    return (
        f"{ref.dtype.name} leaf differs from the reference in {mismatches} of {ref.size} elements "
        "(integer and bool outputs must match exactly)"
    )


def _max_rel(ad: np.ndarray, ar: np.ndarray, rv: np.ndarray) -> float:
    """Largest relative error, with references below ``_REL_FLOOR`` of the leaf's RMS clamped to it."""
    if not ad.size:
        return 0.0
    floor = max(_REL_FLOOR * _rmse(rv), np.finfo(np.float64).tiny)
    with np.errstate(over="ignore"):
        return float((ad / np.maximum(ar, floor)).max())


def _cosine(rv: np.ndarray, cv: np.ndarray) -> float:
    norm_r, norm_c = float(np.linalg.norm(rv)), float(np.linalg.norm(cv))
    if norm_r == 0.0 and norm_c == 0.0:
        return 1.0
    if norm_r == 0.0 or norm_c == 0.0:
        return 0.0
    return float(np.clip(np.dot(rv, cv) / (norm_r * norm_c), -1.0, 1.0))


def _sqnr_db(rv: np.ndarray, d: np.ndarray) -> float:
    signal, noise = float(np.sum(rv * rv)), float(np.sum(d * d))
    if noise == 0.0:
        return _INF
    if signal == 0.0:
        return -_INF
    return 10.0 * math.log10(signal / noise)


def _rmse_ratio(path: str, r: np.ndarray, c: np.ndarray, f: np.ndarray, both: np.ndarray) -> float:
    """The candidate's RMSE against fp64 over eager's own, on elements finite in all three."""
    if f.shape != r.shape:
        raise ValueError(
            f"leaf {path!r}: the fp64 reference has shape {f.shape}, the fp32 reference {r.shape}; "
            "both must come from the same eager model on the same sample"
        )
    ok = both & np.isfinite(f)
    rmse_cand, rmse_eager = _rmse(c[ok] - f[ok]), _rmse(r[ok] - f[ok])
    if rmse_eager > 0.0:
        return rmse_cand / rmse_eager
    return 1.0 if rmse_cand == 0.0 else _INF  # eager is exact at fp64 precision: only an exact candidate matches it


def _allclose_ratio(ad: np.ndarray, ar: np.ndarray, tolerance: Tolerance | None) -> float | None:
    """The largest ``|cand - ref| / (atol + rtol·|ref|)``; None when the tolerance sets neither."""
    if tolerance is None or (tolerance.atol is None and tolerance.rtol is None):
        return None
    allow = (tolerance.atol or 0.0) + (tolerance.rtol or 0.0) * ar
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(ad == 0.0, 0.0, ad / allow)
    return float(ratios.max()) if ratios.size else 0.0


def leaf_metrics(
    path: str,
    reference: Any,
    candidate: Any,
    fp64_reference: Any = None,
    sample_index: int = 0,
    tolerance: Tolerance | None = None,
) -> LeafMetrics:
    """Compare one leaf of one sample with its reference (all math in float64).

    Args:
        path: the leaf's name in the output pytree (e.g. ``"logits"``).
        reference: the fp32 eager output (array-like).
        candidate: the backend's output (array-like).
        fp64_reference: the eager model's output at fp64, for the RMSE ratio; ``None`` skips it.
        sample_index: which sample this is (recorded as ``worst_sample``).
        tolerance: the *effective* tolerance; when it has ``atol`` or ``rtol`` the elementwise
            allclose ratio is computed (an unset one of the two counts as 0).

    Returns:
        The metrics. ``passed`` is False only for failures no tolerance can excuse (shape
        mismatch, non-finite mismatch, integer leaves that differ); otherwise it is a True
        placeholder and :func:`gate_leaf` decides.
    """
    ref = np.asarray(reference)
    cand = np.asarray(candidate)
    shape = tuple(int(d) for d in ref.shape)
    numeric = "biufc"
    if ref.dtype.kind not in numeric or cand.dtype.kind not in numeric:
        return _object_leaf(path, reference, candidate, sample_index)
    if cand.shape != ref.shape:
        return _failed_leaf(
            path, shape, f"shape {tuple(cand.shape)} differs from the reference's {shape}", 0, 0, sample_index
        )
    r, c = _as_real(ref), _as_real(cand)
    nan_count = int(np.count_nonzero(np.isnan(c)))
    inf_count = int(np.count_nonzero(np.isinf(c)))
    divergence = _nonfinite_divergence(r, c)
    if divergence:
        return _failed_leaf(path, shape, divergence, nan_count, inf_count, sample_index)

    both = np.isfinite(r) & np.isfinite(c)
    rv, cv = r[both], c[both]
    d = cv - rv
    ad = np.abs(d)
    ar = np.abs(rv)
    rmse_ratio = None
    if fp64_reference is not None:
        rmse_ratio = _rmse_ratio(path, r, c, _as_real(np.asarray(fp64_reference)), both)
    exact_mismatch = _exact_mismatch(ref, cand)
    return LeafMetrics(
        path=path,
        shape=shape,
        max_abs=float(ad.max()) if ad.size else 0.0,
        max_rel=_max_rel(ad, ar, rv),
        mean_abs=float(ad.mean()) if ad.size else 0.0,
        cosine=_cosine(rv, cv),
        sqnr_db=_sqnr_db(rv, d),
        rmse_ratio=rmse_ratio,
        nan_count=nan_count,
        inf_count=inf_count,
        passed=not exact_mismatch,
        reason=exact_mismatch,
        worst_sample=sample_index,
        allclose_ratio=_allclose_ratio(ad, ar, tolerance),
    )


def gate_leaf(metrics: LeafMetrics, tolerance: Tolerance | None, precision: str) -> tuple[bool, str]:
    """Apply the accuracy gate to one leaf's metrics.

    The user's ``tolerance`` fields override the precision's defaults. A leaf passes when
    every configured group holds: closeness (allclose ``or`` RMSE ratio ≤ limit ``or``
    SQNR ≥ ``close_sqnr_db``, whichever are configured and measurable), SQNR ≥ ``min_sqnr_db``,
    cosine ≥ ``min_cosine``. A failure
    found while measuring (``metrics.passed`` False) or a non-finite error always fails.

    If ``metrics.allclose_ratio`` was not computed (no tolerance given to :func:`leaf_metrics`),
    allclose is judged by the sufficient condition ``max_abs <= atol``.

    Returns:
        ``(passed, reason)``: the reason says what failed with numbers and limits; for a pass
        it is empty, or notes which test let the leaf through when allclose did not.
    """
    tol = _effective(tolerance, precision)
    if not metrics.passed:
        return False, metrics.reason or "failed"
    if not math.isfinite(metrics.max_abs):
        return False, f"non-finite error (candidate has {metrics.nan_count} NaN, {metrics.inf_count} Inf)"

    failures: list[str] = []
    closeness: list[tuple[bool, str]] = []
    if tol.atol is not None or tol.rtol is not None:
        atol, rtol = tol.atol or 0.0, tol.rtol or 0.0
        if metrics.allclose_ratio is not None:
            ok = metrics.allclose_ratio <= 1.0
            excess = f" ({metrics.allclose_ratio:.3g}× the allowance)"
        else:
            ok = metrics.max_abs <= atol
            excess = ""
        closeness.append((ok, f"max_abs {metrics.max_abs:.2e} > atol {atol:g} + rtol {rtol:g}·|ref|{excess}"))
    if tol.max_rmse_ratio is not None and metrics.rmse_ratio is not None:
        ok = metrics.rmse_ratio <= tol.max_rmse_ratio
        closeness.append((ok, f"RMSE {metrics.rmse_ratio:.3g}× eager's (limit {tol.max_rmse_ratio:g}×)"))
    if tol.close_sqnr_db is not None:
        ok = metrics.sqnr_db >= tol.close_sqnr_db
        closeness.append((ok, f"SQNR {metrics.sqnr_db:.1f} dB (close at {tol.close_sqnr_db:g} dB)"))
    note = ""
    if closeness and not any(ok for ok, _ in closeness):
        failures.append(" and ".join(msg for _, msg in closeness))
    elif len(closeness) >= 2 and not closeness[0][0]:
        first_ok = next(msg for ok, msg in closeness if ok)
        note = f"{closeness[0][1]}, but {first_ok} passes"

    if tol.min_sqnr_db is not None and not (metrics.sqnr_db >= tol.min_sqnr_db):
        failures.append(f"SQNR {metrics.sqnr_db:.1f} dB < {tol.min_sqnr_db:g} dB")
    if tol.min_cosine is not None and not (metrics.cosine >= tol.min_cosine):
        failures.append(f"cosine {metrics.cosine:.5f} < {tol.min_cosine:g}")
    if failures:
        return False, "; ".join(failures)
    return True, note


def gate_description(precision: str, tolerance: ToleranceSpec = None) -> str:
    """One line saying which gate applies (for ``AccuracyReport.gate``)."""
    per_leaf: list[str] = []
    if isinstance(tolerance, Mapping):
        base = tolerance.get("*")
        per_leaf = [p for p in tolerance if p != "*"]
    else:
        base = tolerance
    tol = _effective(base, precision)
    groups: list[str] = []
    closeness: list[str] = []
    if tol.atol is not None or tol.rtol is not None:
        closeness.append(f"allclose(atol={tol.atol or 0:g}, rtol={tol.rtol or 0:g})")
    if tol.max_rmse_ratio is not None:
        closeness.append(f"RMSE vs fp64 ≤ {tol.max_rmse_ratio:g}× eager's")
    if tol.close_sqnr_db is not None:
        closeness.append(f"SQNR ≥ {tol.close_sqnr_db:g} dB")
    if closeness:
        groups.append(" or ".join(closeness))
    if tol.min_sqnr_db is not None:
        groups.append(f"SQNR ≥ {tol.min_sqnr_db:g} dB")
    if tol.min_cosine is not None:
        groups.append(f"cosine ≥ {tol.min_cosine:g}")
    text = f"{precision}: {' and '.join(groups) or 'no numeric gate'}; NaN/Inf where the reference is finite fails"
    if per_leaf:
        text += f"; per-leaf overrides for {', '.join(per_leaf)}"
    return text


# --------------------------------------------------------------------------------------------
# Torch layer: output pytrees to named leaves, every sample compared
# --------------------------------------------------------------------------------------------


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _has_kv_attrs(layer: Any) -> bool:
    """Tensor (or None) attributes ``keys`` and ``values``; a dict's methods of those names don't count."""
    return all(hasattr(layer, a) and not callable(getattr(layer, a)) for a in ("keys", "values"))


def _kv_layers(obj: Any) -> list[tuple[Any, Any]] | None:
    """(key, value) per layer of a KV-cache object, duck-typed on transformers' cache classes."""
    layers = getattr(obj, "layers", None)
    if isinstance(layers, (list, tuple)) and all(_has_kv_attrs(layer) for layer in layers):
        # transformers >= 4.56: Cache.layers[i].keys / .values are tensors (None until filled)
        return [(layer.keys, layer.values) for layer in layers]
    keys, values = getattr(obj, "key_cache", None), getattr(obj, "value_cache", None)
    if isinstance(keys, (list, tuple)) and isinstance(values, (list, tuple)):
        return list(zip(keys, values, strict=False))
    return None


def flatten_outputs(obj: Any) -> list[tuple[str, Any]]:
    """Named leaves of a model output, in a stable order.

    A lone tensor or scalar is ``"output"``; sequences use indices (``"0"``), mappings (and
    transformers' ``ModelOutput``) their keys, dataclasses and namedtuples their field names,
    nested levels join with dots (``"past_key_values.0.1"``). KV-cache objects become
    ``"<layer>.key"`` / ``"<layer>.value"`` leaves (``EncoderDecoderCache``: under
    ``self_attention_cache`` / ``cross_attention_cache``). ``None`` is skipped; anything
    else that is not a container (tensor, array, number, string) is a leaf.
    """
    out: list[tuple[str, Any]] = []

    def visit(prefix: str, value: Any) -> None:
        if value is None:
            return
        if _is_leaf(value):
            out.append((prefix or "output", value))
        elif isinstance(value, Mapping):
            for k, v in value.items():
                visit(_join(prefix, k), v)
        elif hasattr(value, "to_tuple") and hasattr(value, "keys") and callable(value.keys):
            for k in value.keys():
                visit(_join(prefix, k), value[k])
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                visit(_join(prefix, f.name), getattr(value, f.name))
        elif (kv := _kv_layers(value)) is not None:
            for i, (k, v) in enumerate(kv):
                visit(_join(prefix, f"{i}.key"), k)
                visit(_join(prefix, f"{i}.value"), v)
        elif hasattr(value, "self_attention_cache") and hasattr(value, "cross_attention_cache"):
            visit(_join(prefix, "self_attention_cache"), value.self_attention_cache)
            visit(_join(prefix, "cross_attention_cache"), value.cross_attention_cache)
        elif callable(getattr(value, "to_legacy_cache", None)):
            for i, layer in enumerate(value.to_legacy_cache()):
                for name, t in zip(("key", "value"), layer[:2], strict=True):
                    visit(_join(prefix, f"{i}.{name}"), t)
        elif isinstance(value, tuple) and hasattr(value, "_fields"):
            for name in value._fields:
                visit(_join(prefix, name), getattr(value, name))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                visit(_join(prefix, i), v)
        else:
            out.append((prefix or "output", value))

    visit("", obj)
    return out


def _is_leaf(value: Any) -> bool:
    import torch  # lazy: the pure numpy layer above imports without torch

    return isinstance(value, (torch.Tensor, np.ndarray, np.generic, int, float, complex, str, bytes))


def _to_numpy(value: Any) -> Any:
    """A tensor as a CPU numpy array: floats in float64, ints in int64, bool kept."""
    import torch  # lazy: the pure numpy layer above imports without torch

    if not isinstance(value, torch.Tensor):
        return value
    t = value.detach()
    if t.is_quantized:
        t = t.dequantize()
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_complex():
        t = torch.view_as_real(t.resolve_conj())
    if t.dtype == torch.bool:
        return t.to("cpu").numpy()
    if t.is_floating_point():
        if t.dtype != torch.float64:
            t = t.float()  # bf16 / fp8 have no numpy dtype: widen first
        return t.to("cpu", torch.float64).numpy()
    return t.to("cpu", torch.int64).numpy()


def _worse(a: LeafMetrics, b: LeafMetrics) -> bool:
    """True when ``a`` is worse than ``b``: failed first, then lower SQNR, then larger max_abs."""
    return (a.passed, a.sqnr_db, -a.max_abs) < (b.passed, b.sqnr_db, -b.max_abs)


def compare_outputs(
    reference: Sequence[Any],
    candidate: Sequence[Any],
    precision: str,
    tolerance: ToleranceSpec = None,
    fp64_reference: Sequence[Any] | None = None,
) -> AccuracyReport:
    """Compare a backend's outputs with the eager reference on every sample.

    Args:
        reference: the fp32 eager output of each sample (one item per sample, any pytree).
        candidate: the backend's output of each sample, same order.
        precision: the backend's precision class (picks the default gate).
        tolerance: the user's ToleranceSpec; resolved per leaf path (globs allowed).
        fp64_reference: the eager output at fp64 per sample, for the RMSE test.

    Returns:
        One report; each leaf holds its worst sample's metrics (a failing sample first, else
        the lowest SQNR). Leaves missing from or extra in the candidate fail the report.

    Raises:
        ValueError: when the sequences are not one item per sample each, or for an unknown
            precision.
    """
    default_tolerance(precision)  # unknown precision: fail before any work
    _check_one_output_per_sample(reference, candidate, fp64_reference)
    worst: dict[str, LeafMetrics] = {}
    structure: list[str] = []
    for i, (ref_out, cand_out) in enumerate(zip(reference, candidate, strict=True)):
        ref_leaves = dict(flatten_outputs(ref_out))
        cand_leaves = dict(flatten_outputs(cand_out))
        f64_leaves = dict(flatten_outputs(fp64_reference[i])) if fp64_reference is not None else {}
        problem = _structure_difference(i, ref_leaves, cand_leaves)
        if problem:
            structure.append(problem)
        for path, ref_value in ref_leaves.items():
            if path not in cand_leaves:
                continue
            m = _gated_leaf(path, ref_value, cand_leaves[path], f64_leaves.get(path), i, precision, tolerance)
            if path not in worst or _worse(m, worst[path]):
                worst[path] = m

    leaves = tuple(worst.values())
    failed = [m for m in leaves if not m.passed]
    return AccuracyReport(
        passed=not failed and not structure,
        precision=precision,
        gate=gate_description(precision, tolerance),
        leaves=leaves,
        reason="; ".join(_failure_reasons(structure, leaves)),
        samples_checked=len(reference),
    )


def _check_one_output_per_sample(
    reference: Sequence[Any], candidate: Sequence[Any], fp64_reference: Sequence[Any] | None
) -> None:
    for name, seq in (("reference", reference), ("candidate", candidate), ("fp64_reference", fp64_reference)):
        if seq is not None and not isinstance(seq, (list, tuple)):
            raise ValueError(
                f"compare_outputs: {name} must be a list with one output per sample, got {type(seq).__name__}"
            )
    if len(reference) != len(candidate) or (fp64_reference is not None and len(fp64_reference) != len(reference)):
        raise ValueError(
            f"compare_outputs: {len(reference)} reference outputs, {len(candidate)} candidate outputs"
            + (f" and {len(fp64_reference)} fp64 outputs" if fp64_reference is not None else "")
            + "; give exactly one output per sample in each"
        )
    if not reference:
        raise ValueError("compare_outputs: no samples to compare; give at least one output per sample")


def _structure_difference(index: int, ref_leaves: Mapping[str, Any], cand_leaves: Mapping[str, Any]) -> str:
    """What sample ``index``'s candidate lacks or adds among the reference's leaves; ``""`` if nothing."""
    missing = [p for p in ref_leaves if p not in cand_leaves]
    extra = [p for p in cand_leaves if p not in ref_leaves]
    if not missing and not extra:
        return ""
    parts = [f"sample {index}: candidate output structure differs from the reference"]
    if missing:
        parts.append(f"missing leaves {missing}")
    if extra:
        parts.append(f"extra leaves {extra}")
    return "; ".join(parts)


def _gated_leaf(
    path: str, ref: Any, cand: Any, f64: Any, index: int, precision: str, tolerance: ToleranceSpec
) -> LeafMetrics:
    """One leaf of one sample measured and gated with the tolerance its path resolves to."""
    tol = resolve_tolerance(tolerance, path).merged_over(default_tolerance(precision))
    m = leaf_metrics(
        path,
        _to_numpy(ref),
        _to_numpy(cand),
        fp64_reference=_to_numpy(f64) if f64 is not None else None,
        sample_index=index,
        tolerance=tol,
    )
    passed, reason = gate_leaf(m, tol, precision)
    return dataclasses.replace(m, passed=passed, reason=reason)


def _failure_reasons(structure: list[str], leaves: Sequence[LeafMetrics]) -> list[str]:
    """Structure problems, then the count of failed leaves and the first three of them."""
    failed = [m for m in leaves if not m.passed]
    reasons = list(structure)
    if failed:
        reasons.append(f"{len(failed)} of {len(leaves)} leaves failed")
    reasons += [f"{m.path} [sample {m.worst_sample}]: {m.reason}" for m in failed[:3]]
    if len(failed) > 3:
        reasons.append(f"{len(failed) - 3} more leaves failed")
    return reasons
