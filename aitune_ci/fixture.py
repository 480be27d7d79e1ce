"""``@ait.tune_fixture``: a pytest fixture the aitune plugin turns into tuning checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, overload

import pytest

__all__ = ["Declared", "declared", "is_tune_fixture", "tune_fixture"]

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute set on the function so the plugin can tell ours from a plain fixture.
MARKER = "__aitune_fixture__"

#: Attribute holding what the decorator declared (``Declared``), read at collection.
DECLARED = "__aitune_declared__"


@dataclass(frozen=True)
class Declared:
    """The items a tune fixture declares in its decorator, so collection need not call it.

    Attributes:
        backends: the backends its spec tunes (``eager`` is always added). A spec that leaves
            ``backends=None`` tunes exactly these.
        modules: the submodules the spec tunes one by one (then a ``mixed`` item exists), or None.
    """

    backends: tuple[str, ...]
    modules: tuple[str, ...] | None = None

    @property
    def mixed(self) -> bool:
        return bool(self.modules)


@overload
def tune_fixture(func: F) -> F: ...
@overload
def tune_fixture(
    *, name: str | None = None, backends: Sequence[str] | None = None, modules: Sequence[str] | None = None
) -> Callable[[F], F]: ...


def tune_fixture(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    backends: Sequence[str] | None = None,
    modules: Sequence[str] | None = None,
) -> Any:
    """Declare a model to tune: a session-scoped pytest fixture returning an ``ait.TuneSpec``.

    The name must start with ``tune_``. Use it bare (``@ait.tune_fixture``) or with arguments
    (``@ait.tune_fixture(name="tune_resnet", backends=["eager", "inductor"])``). A plain
    ``@pytest.fixture`` named ``tune_*`` works too. It must not request other fixtures.

    ``backends=`` (and ``modules=`` when the spec tunes submodules) declare the fixture's items, so
    ``pytest --aitune`` collects them without calling the fixture: the model is built only by the
    process that tunes it. Without them, collection uses the plan cached from an earlier run or the
    committed baseline's backends, and calls the fixture only when neither exists. A spec that
    disagrees with its declaration fails its checks, naming both.
    """
    declaration = _declaration(backends, modules)

    def decorate(fn: Callable[..., Any]) -> Any:
        fixture_name = name or fn.__name__
        if not fixture_name.startswith("tune_"):
            raise ValueError(
                f"@ait.tune_fixture {fixture_name!r}: the name must start with 'tune_' "
                f"(e.g. tune_{fixture_name}) so `pytest --aitune` finds it"
            )
        setattr(fn, MARKER, True)
        if declaration is not None:
            setattr(fn, DECLARED, declaration)
        return pytest.fixture(scope="session", name=fixture_name)(fn)

    return decorate(func) if func is not None else decorate


def _names(what: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            f"@ait.tune_fixture({what}=...) expects a list of names such as ['eager', 'inductor'], got {value!r}"
        )
    if not all(isinstance(v, str) and v for v in value):
        raise TypeError(f"@ait.tune_fixture({what}=...) expects non-empty strings, got {list(value)!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"@ait.tune_fixture({what}=...) lists a name twice: {list(value)!r}")
    return tuple(value)


def _declaration(backends: Sequence[str] | None, modules: Sequence[str] | None) -> Declared | None:
    """Check the decorator's arguments' shapes; backend names are checked at collection (no torch here)."""
    if backends is None:
        if modules is not None:
            raise ValueError(
                "@ait.tune_fixture(modules=...) only completes backends=...: declare both, e.g. "
                "@ait.tune_fixture(backends=['eager', 'inductor'], modules=['backbone'])"
            )
        return None
    return Declared(_names("backends", backends), _names("modules", modules) if modules is not None else None)


def declared(func: Callable[..., Any]) -> Declared | None:
    """What ``@ait.tune_fixture(backends=..., modules=...)`` declared on ``func``, or None."""
    value = getattr(func, DECLARED, None)
    return value if isinstance(value, Declared) else None


def is_tune_fixture(name: str, obj: Any) -> Callable[..., Any] | None:
    """The underlying function when ``obj`` (found as ``name`` in a module) is a ``tune_*`` fixture."""
    fixture_name = getattr(obj, "name", name)
    if not isinstance(fixture_name, str) or not fixture_name.startswith("tune_"):
        return None
    wrapped = getattr(obj, "__wrapped__", None)
    # pytest wraps fixture functions in FixtureFunctionDefinition (functools.update_wrapper sets __wrapped__).
    if wrapped is None or not callable(wrapped) or not type(obj).__module__.startswith("_pytest"):
        return None
    return wrapped
