"""The pytest plugin (entry point ``aitune``): thin hooks that call into ``AituneSession``.

Without ``--aitune`` every hook returns at once and nothing beyond this module is imported.
Hook reference: https://docs.pytest.org/en/stable/reference/reference.html#hooks
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from aitune_ci.caught_warnings import TUNING
from aitune_ci.gpus import PinningError, assign_gpu, pin_worker, pin_worker_cpus, visible_gpus
from aitune_ci.options import OPTIONS, add_options
from aitune_ci.plugin.progress import TerminalProgress
from aitune_ci.plugin.quiet import catching
from aitune_ci.plugin.quiet import summary_lines as warning_lines
from aitune_ci.plugin.rootdir import hijacked_rootdir
from aitune_ci.plugin.stash import collectors_key, session_key

if TYPE_CHECKING:  # pragma: no cover
    from aitune_ci.plugin.session import AituneSession, SessionOptions

_progress_key = pytest.StashKey[TerminalProgress]()
_WORKER_KEY = "aitune"


def pytest_addoption(parser: pytest.Parser) -> None:
    """https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_addoption"""
    group = parser.getgroup("aitune", "aitune-ci: tuned inference regression checks")
    add_options(group.addoption)
    for opt in OPTIONS:
        # argparse reads the help as a format string (5%% is 5%); the ini help is shown as written
        parser.addini(opt.dest, opt.help.replace("%%", "%"), type=opt.ini_type, default=None)  # type: ignore[arg-type]


def _option(config: pytest.Config, dest: str) -> Any:
    """Command line first, then the ini file (``[tool.pytest.ini_options]``), then the default."""
    value = config.getoption(dest)
    if value is not None and value is not False:
        return value
    opt = next(o for o in OPTIONS if o.dest == dest)
    raw = config.getini(dest)
    if raw in (None, "", []):
        return opt.default
    if opt.type is None:
        return raw
    try:
        if isinstance(raw, str):
            return opt.type(raw)
        if isinstance(raw, list):
            return [opt.type(item) for item in raw]
    except Exception as exc:
        raise pytest.UsageError(f"ini option {dest} = {raw!r}: {exc}") from None
    return raw


def _session_options(config: pytest.Config) -> SessionOptions:
    # lazy: the check layer imports torch; a run without --aitune must not pay for it
    from aitune_ci.check import CheckOptions
    from aitune_ci.plugin.session import SessionOptions

    root = Path(config.rootpath)
    directory = Path(_option(config, "aitune_dir"))
    check = CheckOptions(
        directory=directory if directory.is_absolute() else root / directory,
        update=bool(_option(config, "aitune_update")),
        update_new_only=bool(_option(config, "aitune_update_new_only")),
        strict=bool(_option(config, "aitune_strict")),
        rebuild=bool(_option(config, "aitune_rebuild")),
        reuse=bool(_option(config, "aitune_reuse")),
        cache_dir=_cache_dir(root, _option(config, "aitune_cache_dir")),
        measure_seconds=_option(config, "aitune_measure_seconds"),
    )
    return SessionOptions(
        root=root,
        check=check,
        threshold=_option(config, "aitune_threshold"),
        backends=_option(config, "aitune_backends"),
        fixtures=_option(config, "aitune_fixtures"),
        reports=list(_option(config, "aitune_report") or []),
        shard=_option(config, "aitune_shard"),
        oversubscribe=bool(_option(config, "aitune_oversubscribe")),
        against=_option(config, "aitune_against"),
        warn_only=bool(_option(config, "aitune_warn_only")),
    )


def _cache_dir(root: Path, value: str | None) -> str | None:
    """``--aitune-cache-dir`` relative to the rootdir (``off`` and unset pass through)."""
    from aitune_ci.store.build_cache import OFF  # lazy: the build cache imports torch; only --aitune gets here

    if not value or value.lower() in OFF or Path(value).expanduser().is_absolute():
        return value
    return str(root / value)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """A rootdir taken from a path option's value is refused here, before the conftests load: read
    from the wrong rootdir they fail on their own imports (a ``pythonpath`` ini setting not read),
    which hides the cause. Only plugins loaded before the conftests (installed, or ``-p``) see it."""
    if not _early_option(early_config, "aitune"):
        return
    _refuse_hijacked_rootdir(early_config)


def _early_option(config: pytest.Config, dest: str) -> Any:
    """An option before ``config.option`` is filled: the command line as parsed so far, then the ini."""
    value = getattr(config.known_args_namespace, dest, None)
    return value if value not in (None, False) else config.getini(dest)


def _refuse_hijacked_rootdir(config: pytest.Config) -> None:
    hijacked = hijacked_rootdir(
        config.invocation_params.args, config.invocation_params.dir, config.rootpath, config.inipath
    )
    if hijacked is not None:
        raise pytest.UsageError(f"aitune: {hijacked}")


def _refuse_options_without_aitune(config: pytest.Config) -> None:
    """An ``--aitune-*`` option on the command line of a run without ``--aitune`` does nothing:
    a nightly whose ``--aitune`` went missing would pass for months, writing nothing. Only the
    command line itself counts: ``addopts`` or ``PYTEST_ADDOPTS`` may carry such options for the
    runs that add ``--aitune``, and every plain run would stop on them."""
    flags = {o.flag for o in OPTIONS if o.dest != "aitune"}
    typed = {str(arg).split("=", 1)[0] for arg in config.invocation_params.args}
    given = [flag for flag in sorted(flags, key=[o.flag for o in OPTIONS].index) if flag in typed]
    if given:
        raise pytest.UsageError(
            f"aitune: {', '.join(given)} does nothing without --aitune (or aitune = true in the ini file): "
            f"run pytest --aitune {' '.join(given)} ..."
        )


def _refuse_unknown_backends(names: list[str] | None) -> None:
    """``--aitune-backends`` with a name no backend has would silently drop that backend's checks."""
    from aitune_ci.backends.registry import backend_names, unknown_backend  # lazy: loads every backend (torch)

    known = backend_names()
    for name in names or []:
        if name not in known:
            raise pytest.UsageError(
                f"aitune: --aitune-backends names an {unknown_backend(name)}. "
                "Run aitune-ci backends to see which are available here."
            )


def pytest_configure(config: pytest.Config) -> None:
    """https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_configure"""
    config.addinivalue_line("markers", "aitune: a tuning check generated by aitune-ci from a tune_* fixture")
    if not _option(config, "aitune"):
        _refuse_options_without_aitune(config)
        return
    _refuse_hijacked_rootdir(config)  # again: a plugin registered in a conftest saw no earlier hook
    # lazy: the session imports torch and the engine; a run without --aitune must not pay for it
    from aitune_ci.plugin.session import AituneSession

    options = _session_options(config)
    _refuse_unknown_backends(options.backends)
    if options.against and options.check.writes_baselines:
        raise pytest.UsageError(
            "aitune: --aitune-against judges the head against a git ref; it cannot also write baselines. "
            "Run --aitune-update without --aitune-against (the nightly does)."
        )
    progress = TerminalProgress(config)
    try:
        config.stash[session_key] = AituneSession(options, progress=progress)
    except Exception as exc:  # a bad [tool.aitune] table is a usage error, not a crash
        raise pytest.UsageError(str(exc)) from None
    progress.install()
    config.stash[_progress_key] = progress
    config.stash[collectors_key] = {}
    _pin_gpus(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    """https://docs.pytest.org/en/stable/reference/reference.html#pytest.hookspec.pytest_unconfigure"""
    progress = config.stash.get(_progress_key, None)
    if progress is not None:
        progress.uninstall()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist (controller): keep each tune fixture's items on one worker, so it is tuned once.

    Replaces ``--dist load`` (what ``-n N`` means) and ``loadgroup``; other modes are left alone.
    """
    if _session(config) is None or config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from aitune_ci.plugin.items import fixture_scheduler  # lazy: items import the engine (torch)

    return fixture_scheduler(config, log)


def _pin_gpus(config: pytest.Config) -> None:
    """One GPU and a share of the CPU cores per xdist worker; refuse more workers than GPUs."""

    oversubscribe = bool(_option(config, "aitune_oversubscribe"))
    workerinput = getattr(config, "workerinput", None)
    try:
        if workerinput is not None:
            worker, count = workerinput.get("workerid"), int(workerinput.get("workercount", 1))
            pin_worker_cpus(worker, count)
            gpu = pin_worker(worker, count, oversubscribe)
            if gpu is not None and "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
                import warnings

                warnings.warn(
                    "aitune: CUDA was initialised before the worker could be pinned to GPU "
                    f"{gpu}; measurements may share a GPU",
                    stacklevel=1,
                )
            return
        workers = getattr(config.option, "numprocesses", None)
        if isinstance(workers, int) and workers > 1:
            gpus = visible_gpus()
            if gpus:
                assign_gpu(workers - 1, workers, gpus, oversubscribe)  # raises when too many
    except PinningError as exc:
        raise pytest.UsageError(f"aitune: {exc}") from None


def _session(config: pytest.Config) -> AituneSession | None:
    return config.stash.get(session_key, None)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[Any]:
    """Remember directory and module collectors, so generated items get the right parent."""
    report = yield
    config = collector.config
    if _session(config) is not None and isinstance(collector, (pytest.Dir, pytest.Package, pytest.Module)):
        config.stash[collectors_key][str(collector.path)] = collector
    return report


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """Add one item per (tune fixture, backend) plus a selection item, then apply --aitune-fixtures and --aitune-shard.

    As a wrapper, the items are added before any other plugin's hook runs (so -k/-m deselect them
    like any test), and the fixture filter and the shard are taken after them (so the shard splits
    what was selected).
    """
    state = _session(config)
    if state is None:
        return (yield)
    from aitune_ci.plugin.items import apply_shard, generate_items  # lazy: items import the engine (torch)

    with catching(state.warnings):  # fixtures' warnings go to aitune's summary line, not pytest's block
        generated = generate_items(session, state, config.stash[collectors_key])
        if state.options.against:
            _load_base(state, state.options.against)
    _report_collected(session, generated)
    _warn_of_keys_matching_nothing(config, state, generated)
    items.extend(generated)
    result = yield
    if state.options.fixtures:
        _keep_fixtures(config, items, state.options.fixtures, set(state.fixtures))
    if state.options.shard is not None:
        kept, dropped = apply_shard(items, state.options.shard)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
    return result


def _load_base(state: AituneSession, ref: str) -> None:
    """``--aitune-against REF``: build the base's fixtures from a git worktree (one per process)."""
    from aitune_ci.plugin.against import BaseCheckoutError  # lazy: imports the fixture discovery (torch)

    try:
        state.load_base(ref)
    except BaseCheckoutError as exc:
        raise pytest.UsageError(f"aitune: {exc}") from None


def _keep_fixtures(config: pytest.Config, items: list[pytest.Item], names: list[str], known: set[str]) -> None:
    """``--aitune-fixtures``: deselect the aitune items of every other tune fixture (other tests stay)."""
    from aitune_ci.plugin.items import AituneItem  # lazy: items import the engine (torch)

    unknown = [n for n in names if n not in known]
    if unknown:
        raise pytest.UsageError(
            f"--aitune-fixtures: no tune fixture named {', '.join(unknown)} was collected; "
            f"known: {', '.join(sorted(known)) or 'none'}"
        )
    wanted = set(names)
    dropped = [item for item in items if isinstance(item, AituneItem) and item.fixture not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not (isinstance(item, AituneItem) and item.fixture not in wanted)]


def _warn_of_keys_matching_nothing(config: pytest.Config, state: AituneSession, generated: list[Any]) -> None:
    """A ``[tool.aitune]`` key naming no collected check (a typo'd threshold, acknowledgement or
    quarantine) is said once per run: it used to be ignored in silence."""
    worker = getattr(config, "workerinput", {}).get("workerid", "gw0")  # xdist: every worker collects all
    if not generated or worker != "gw0":
        return  # nothing collected here (another folder's run), or another worker says it
    checks = {f"{item.fixture}[{item.check}]" for item in generated}
    some = config.args_source is pytest.Config.ArgsSource.ARGS  # paths given: other folders' fixtures not collected
    for line in state.repo_config.keys_matching_nothing(
        checks, fixtures_only=state.options.backends is not None, some_fixtures=some
    ):
        state.progress(f"warning: {line}")


def _report_collected(session: pytest.Session, items: list[pytest.Item]) -> None:
    """Announce generated items as collected, so "collected N items" (and N - deselected) counts them."""
    by_parent: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_parent.setdefault(item.parent.nodeid if item.parent else "", []).append(item)
    for nodeid, group in by_parent.items():
        session.ihook.pytest_collectreport(report=pytest.CollectReport(nodeid, "passed", None, group))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Record which checks survived deselection and sharding: only their backends get tuned."""
    state = _session(session.config)
    if state is None:
        return
    from aitune_ci.plugin.items import AituneItem  # lazy: items import the engine (torch)

    for item in session.items:
        if isinstance(item, AituneItem):
            state.select(item.fixture, item.check)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = _session(config)
    if state is None:
        return None
    return [f"aitune: baselines in {state.options.directory}" + (" (updating)" if state.options.update else "")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """An aitune item's warnings are counted for the summary line, not left to pytest's warnings summary.

    Runs inside pytest's own warning capture (a ``tryfirst`` wrapper), so other tests keep theirs.
    """
    state = _session(item.config)
    if state is None:
        return (yield)
    from aitune_ci.plugin.items import AituneItem  # lazy: items import the engine (torch)

    if not isinstance(item, AituneItem):
        return (yield)
    with catching(state.warnings, TUNING, item.fixture):
        return (yield)


def _trace_quiet(item: pytest.Item) -> Any:
    """For an aitune item: pytest's log handlers off torch's trace logger (see ``aitune_ci.plugin.quiet``)."""
    if _session(item.config) is None:
        return contextlib.nullcontext()
    from aitune_ci.plugin.items import AituneItem  # lazy: items import the engine (torch)
    from aitune_ci.plugin.quiet import trace_kept_from_pytest

    return trace_kept_from_pytest() if isinstance(item, AituneItem) else contextlib.nullcontext()


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Inside pytest's log capture of the phase (``trylast``: the innermost wrapper), see ``_trace_quiet``."""
    with _trace_quiet(item):
        return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Inside pytest's log capture of the phase (``trylast``: the innermost wrapper), see ``_trace_quiet``."""
    with _trace_quiet(item):
        return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Inside pytest's log capture of the phase (``trylast``: the innermost wrapper), see ``_trace_quiet``."""
    with _trace_quiet(item):
        return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Workers hand their findings to the controller; the controller writes the reports."""
    config = session.config
    state = _session(config)
    if state is None:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    with catching(state.warnings, TUNING):  # fixtures' teardowns
        problems = state.close()
    for problem in problems:
        if reporter is not None:
            reporter.write_line(f"aitune: {problem}")
    if hasattr(config, "workeroutput"):
        config.workeroutput[_WORKER_KEY] = json.dumps(state.run_json())
        return
    for path in state.write_reports():
        if reporter is not None:
            reporter.write_line(f"aitune: report written to {os.fspath(path)}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: merge a finished worker's results into the controller's session."""
    state = _session(node.config)
    data = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if state is not None and data:
        state.absorb(json.loads(data))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The verdict table and one count line; the verdict itself was decided by the items."""
    state = _session(config)
    if state is None or hasattr(config, "workeroutput"):
        return

    lines = state.summary_lines()
    if not config.getoption("disable_warnings", False):  # --disable-warnings: no warnings summary, ours neither
        lines += warning_lines(state.warnings, verbosity=config.get_verbosity(), reported=bool(state.options.reports))
    if lines:
        terminalreporter.section("aitune")
        for line in lines:
            terminalreporter.write_line(line)
