"""``@ait.tune_fixture``: a pytest fixture the aitune plugin turns into tuning checks."""

from __future__ import annotations

from typing import Any, Callable, TypeVar, overload

import pytest

__all__ = ["tune_fixture", "is_tune_fixture"]

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute set on the function so the plugin can tell ours from a plain fixture.
MARKER = "__aitune_fixture__"


@overload
def tune_fixture(func: F) -> F: ...
@overload
def tune_fixture(*, name: str | None = None) -> Callable[[F], F]: ...


def tune_fixture(func: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Declare a model to tune: a session-scoped pytest fixture returning an ``ait.TuneSpec``.

    The name must start with ``tune_``. Use it bare (``@ait.tune_fixture``) or with a name
    (``@ait.tune_fixture(name="tune_resnet")``). A plain ``@pytest.fixture`` named ``tune_*``
    works too; this decorator only adds the name check and session scope. ``pytest --aitune``
    calls the function once, at collection, so it must not request other fixtures.
    """

    def decorate(fn: Callable[..., Any]) -> Any:
        fixture_name = name or fn.__name__
        if not fixture_name.startswith("tune_"):
            raise ValueError(
                f"@ait.tune_fixture {fixture_name!r}: the name must start with 'tune_' "
                f"(e.g. tune_{fixture_name}) so `pytest --aitune` finds it"
            )
        setattr(fn, MARKER, True)
        return pytest.fixture(scope="session", name=fixture_name)(fn)

    return decorate(func) if func is not None else decorate


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
