"""pytest hooks and fixtures only. The options are declared in options.py, the collection nodes (suites, manifests, task
items) live in items.py, and what an item does is pipeline/session.py's."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_speedrun import hookspec
from pytest_speedrun.errors import MissingInput, SpeedrunError
from pytest_speedrun.items import (
    SESSION_KEY,
    STATE,
    ManifestFile,
    SpeedrunItem,
    SpeedrunState,
    SuiteCollector,
    link_previous,
)

# The pipeline (session, runs, judging, agents) is imported by the hooks that use it, not here: pytest imports
# every installed plugin on every run, and a run that never reaches pytest_configure (--version, a usage error)
# or that names no suite should not pay for it (issue 23).
if TYPE_CHECKING:
    from pytest_speedrun.execution.resources import Lease
    from pytest_speedrun.pipeline.item import Execution


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    from pytest_speedrun.options import add_options

    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "speedrun: a pytest-speedrun benchmark task item")
    config.addinivalue_line("markers", "speedrun_gpus(n): GPUs the speedrun_gpus fixture leases (default 1)")
    config.addinivalue_line("markers", "track1: a ladder task of upstream track 1 (GPT-2 small, val loss 3.28)")
    config.addinivalue_line("markers", "track2: a ladder task of upstream track 2 (GPT-2 medium, val loss 2.92)")
    config.addinivalue_line("markers", "track3: a ladder task of upstream track 3 (optimization, scored by steps)")
    from pytest_speedrun.options import agent_from_config, settings_from_config
    from pytest_speedrun.pipeline.session import SessionInfo, SpeedrunSession

    try:
        settings = settings_from_config(config)
        agent = agent_from_config(config, settings.agent, settings.cache_dir) if settings.agent else None
    except SpeedrunError as exc:
        raise pytest.UsageError(str(exc)) from None
    workerinput = getattr(config, "workerinput", None)
    if workerinput and SESSION_KEY in workerinput:
        info, owner = SessionInfo.from_json(workerinput[SESSION_KEY]), False
    else:
        info, owner = SessionInfo.create(settings.gpus), True
    workers = int(workerinput.get("workercount", 1)) if workerinput else 1
    state = SpeedrunState(settings=settings, session=SpeedrunSession(settings, agent, info, workers, owner))
    if owner and settings.agent:
        state.orphans = state.session.end_orphans()
    config.stash[STATE] = state
    config.pluginmanager.register(RowCollector(state.rows), "speedrun-rows")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(), "speedrun-xdist")
    # SIGTERM becomes KeyboardInterrupt, so runs are killed and leases released as on Ctrl-C.
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        state.previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def _sigterm_to_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    state.session.close()
    if state.previous_sigterm is not None:
        signal.signal(signal.SIGTERM, state.previous_sigterm)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(STATE, None)
    if state is None or not state.settings.suites:
        return None
    s = state.settings
    lines = [f"speedrun: agent {s.agent or '(none: task items skip)'}, suites {', '.join(s.suites)}, "
             f"results {s.results_dir}"]
    if state.orphans:
        lines.append(state.orphans)
    if s.agent and s.sandbox != "none":
        from pytest_speedrun.execution.sandbox import probe as probe_sandbox

        lines.append("speedrun " + probe_sandbox(s.sandbox).describe())
    return lines


class XdistHooks:
    """Registered only when pytest-xdist is present: hand the controller's session (id, GPUs, lease pool) to
    every worker."""

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[SESSION_KEY] = node.config.stash[STATE].session.info.to_json()


# --- collection -------------------------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ManifestFile | None:
    """Manifests given as paths: `pytest tasks/nanogpt` (any `tasks/<suite>/*.toml`) collects that suite."""
    if file_path.suffix == ".toml" and file_path.parent.parent.name == "tasks":
        return ManifestFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    from pytest_speedrun.tasks.manifest import find_suite

    state = config.stash[STATE]
    suites = list(state.settings.suites)
    if not config.getoption("speedrun_suite") and config.args_source == pytest.Config.ArgsSource.ARGS:
        suites = []  # explicit paths on the command line: the ini's default suites are not added
    collected = {i.path.resolve() for i in items if isinstance(i, SpeedrunItem)}
    for name in suites:
        try:
            suite_dir = find_suite(name)
        except SpeedrunError as exc:
            raise pytest.UsageError(str(exc)) from None
        if any(p.parent == suite_dir for p in collected):
            continue  # already collected from a path argument
        collector = SuiteCollector.from_parent(session, name=f"speedrun-{suite_dir.name}", path=suite_dir,
                                               nodeid=f"speedrun/{suite_dir.name}")
        items.extend(i for i in session.genitems(collector) if isinstance(i, SpeedrunItem))
    link_previous(items)


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def speedrun_gpus(request: pytest.FixtureRequest) -> Iterator[Lease]:
    """A lease of GPU ids (and a share of CPU cores) for the current test, from the pool every xdist worker
    shares; `@pytest.mark.speedrun_gpus(n)` asks for n GPUs (default 1). Skips when the machine has fewer."""
    marker = request.node.get_closest_marker("speedrun_gpus")
    n = int(marker.args[0]) if marker and marker.args else 1
    session = request.config.stash[STATE].session
    if n > len(session.info.gpus):
        pytest.skip(f"needs {n} GPU(s), this machine offers {len(session.info.gpus)}")
    cores = session.needs_cores()
    with session.pool.lease(n, cores, who=request.node.nodeid) as lease:
        yield lease


@pytest.fixture
def speedrun_run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Execution]:
    """Run a training script under the harness: `speedrun_run(script, target_val_loss=3.28, nproc=1,
    timeout_s=3600, seed=0, data="tiny" | Path(fineweb_dir), env=None)` returns an `Execution` with `.outcome`
    (exit code, wall time, log path), `.metrics` (parsed from the log by the harness) and `.verdict`."""
    session = request.config.stash[STATE].session
    counter = iter(range(1_000_000))

    def run(script: str | Path, *, target_val_loss: float, **kwargs: Any) -> Execution:
        workdir = tmp_path / f"speedrun-run-{next(counter)}"
        try:
            return session.run_script(Path(script), target_val_loss=target_val_loss, workdir=workdir,
                                      who=request.node.nodeid, **kwargs)
        except MissingInput as exc:
            pytest.skip(str(exc))

    return run


# --- reporting --------------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """The item's result record rides on its call report: xdist serialises it to the controller as it is."""
    report = yield
    if call.when == "call" and isinstance(item, SpeedrunItem) and item.result is not None:
        report.speedrun_record = item.result.to_json()
    return report


class RowCollector:
    """Collects the result record of every item report. On the controller under xdist these are the reports
    the workers sent, so the summary is written once, by the controller."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "speedrun_record", None)
        if report.when == "call" and isinstance(record, dict):
            self.rows.append(dict(record, nodeid=report.nodeid))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Session-level figures into the JUnit <testsuite> properties, from the controller (also under xdist),
    before junitxml writes its file."""
    config = session.config
    state = config.stash.get(STATE, None)
    if state is None or hasattr(config, "workerinput") or not state.rows:
        return
    try:
        from _pytest.junitxml import xml_key  # the junitxml plugin's own handle; no public API from a hook
    except ImportError:  # pragma: no cover
        return
    xml = config.stash.get(xml_key, None)
    if xml is not None:
        from pytest_speedrun.results import summary

        for name, value in summary.suite_properties(state.rows):
            xml.add_global_property(name, value)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or STATE not in config.stash:
        return
    rows = config.stash[STATE].rows
    if not rows:
        return
    from pytest_speedrun.results import summary

    terminalreporter.write_sep("=", "speedrun")
    for line in summary.summary_lines(rows):
        terminalreporter.write_line(line)
    session = config.stash[STATE].session
    agent = session.agent
    if agent is not None and not getattr(agent, "trusted", False):  # baseline and oracle need no answers hidden
        # Agents that start processes (command: and its presets) say whether they need the network.
        networked = hasattr(agent, "needs_network") and (agent.needs_network or session.settings.agent_network)
        from pytest_speedrun.execution.sandbox import probe as probe_sandbox

        exposure = probe_sandbox(session.settings.sandbox).exposure(networked)
        if exposure:
            terminalreporter.write_line(exposure)
    logs = sorted((session.settings.results_dir / session.info.session_id).glob("progress-*.log"))
    if logs:
        terminalreporter.write_line("live progress per worker: " + ", ".join(str(p) for p in logs))
