"""The collection nodes of the benchmark: suites, manifests and task items (one per task × hint regime × seed),
with the session state they read from the config's stash, the items' pytest-timeout and their live progress.
The hooks that create them are in plugin.py; what an item does when it runs is pipeline/session.py's."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_speedrun.errors import MissingInput, SpeedrunError

# The pipeline is imported where an item or a manifest first needs it (plugin.py says why).
if TYPE_CHECKING:
    from pytest_speedrun.pipeline.session import SpeedrunSession
    from pytest_speedrun.results.record import ItemResult
    from pytest_speedrun.settings import Settings
    from pytest_speedrun.tasks.manifest import Task

SESSION_KEY = "speedrun_session"


@dataclass
class SpeedrunState:
    settings: Settings
    session: SpeedrunSession
    rows: list[dict[str, Any]] = field(default_factory=list)
    previous_sigterm: Any = None
    orphans: str = ""  # the line saying which runs of dead sessions were ended at the start


STATE = pytest.StashKey[SpeedrunState]()


def item_timeout(config: pytest.Config, task, settings) -> float:
    """The item's pytest-timeout: the outer safety net, or the user's timeout if that is shorter (a marker would
    otherwise override what CI asked for). pytest-timeout's documented order: --timeout, PYTEST_TIMEOUT, ini."""
    from pytest_speedrun.pipeline.session import outer_timeout_s

    outer = outer_timeout_s(task, settings)
    user = config.getoption("timeout", None)
    if user is None:
        user = os.environ.get("PYTEST_TIMEOUT") or config.getini("timeout") or None
    try:
        user_s = float(user) if user is not None else 0.0
    except ValueError:
        user_s = 0.0  # pytest-timeout reports a malformed value itself
    return min(outer, user_s) if user_s > 0 else outer


# --- collection -------------------------------------------------------------------------------------------


class SuiteCollector(pytest.Collector):
    """A suite of task manifests, collected independently of the command-line paths (`--speedrun-suite`)."""

    def collect(self) -> list[pytest.Collector]:
        return [ManifestFile.from_parent(self, path=p, nodeid=f"{self.nodeid}/{p.name}")
                for p in sorted(self.path.glob("*.toml"))]


class ManifestFile(pytest.File):
    """One manifest: its items, parametrized over hint regimes × seeds. A bad manifest fails only itself."""

    def collect(self) -> list[SpeedrunItem]:
        from pytest_speedrun.tasks.hints import regime_label
        from pytest_speedrun.tasks.manifest import load_task

        task = load_task(self.path)
        settings = self.config.stash[STATE].settings
        items = []
        for regime in settings.regimes:
            for seed in range(settings.seeds):
                name = f"{task.id}[h{regime_label(regime)}-s{seed}]"
                item = SpeedrunItem.from_parent(self, name=name, task=task, regime=regime, seed=seed)
                item.add_marker(pytest.mark.speedrun)
                if task.track is not None:  # the upstream track: -m track1 / -m track2 (registered in plugin.py)
                    item.add_marker(getattr(pytest.mark, f"track{task.track}"))
                if settings.cumulative:  # one chain per worker: the tasks must run in order
                    item.add_marker(pytest.mark.xdist_group("speedrun-cumulative"))
                if self.config.pluginmanager.hasplugin("timeout"):
                    item.add_marker(pytest.mark.timeout(item_timeout(self.config, task, settings)))
                items.append(item)
        return items

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, SpeedrunError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


def link_previous(items: list[pytest.Item]) -> None:
    """Cumulative mode needs each task's predecessor in its suite (the task whose target it starts from)."""
    suite_items = [i for i in items if isinstance(i, SpeedrunItem)]
    by_target = {(i.task.suite, i.task.target.record): i.task for i in suite_items}
    for item in suite_items:
        item.previous_task = by_target.get((item.task.suite, item.task.start.record))


# --- items ------------------------------------------------------------------------------------------------


class SpeedrunFailure(Exception):
    """Raised by an item whose result is not a pass; carries the one-paragraph message."""


class SpeedrunItem(pytest.Item):
    def __init__(self, *, task: Task, regime: tuple[int, ...], seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task, self.regime, self.seed = task, regime, seed
        self.result: ItemResult | None = None
        self.previous_task: Task | None = None  # the task whose target record this one starts from

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"speedrun {self.name}: {self.task.title}"

    def setup(self) -> None:
        state = self.config.stash[STATE]
        if state.session.agent is None and not state.settings.smoke:
            from pytest_speedrun.agents.registry import available_agents

            pytest.skip(f"no agent: run the benchmark with --speedrun-agent=oracle (or one of: "
                        f"{', '.join(available_agents())})")

    def runtest(self) -> None:
        state = self.config.stash[STATE]
        try:
            result = state.session.run(self.task, self.regime, self.seed, self.name, on_wait=self._waiting,
                                       previous=self.previous_task, progress=self._progress_sink())
        except MissingInput as exc:
            pytest.skip(str(exc))
        except SpeedrunError as exc:
            raise SpeedrunFailure(f"{self.task.id}: {exc}") from None
        self.result = result
        from pytest_speedrun.results import summary

        self.user_properties.extend(summary.user_properties(result))
        message = summary.failure_message(result, state.settings.min_fsr)
        if message:
            raise SpeedrunFailure(message)

    def _progress_sink(self) -> Callable[[str], None] | None:
        """Live progress of the running training: an updating terminal line with -v (no xdist), else lines in
        the worker's progress log, at most every 10 s, named in the summary."""
        config = self.config
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None:
            path = config.stash[STATE].session.progress_log(workerinput.get("workerid", "gw"))
            last = [0.0]

            def to_file(line: str) -> None:
                now = time.monotonic()
                if now - last[0] >= 10.0:
                    last[0] = now
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with open(path, "a", encoding="utf-8") as f:
                        f.write(f"{time.strftime('%H:%M:%S')} {self.name}: {line}\n")
            return to_file
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or config.option.verbose <= 0:
            return None
        capman = config.pluginmanager.get_plugin("capturemanager")
        started = [False]

        def to_terminal(line: str) -> None:
            # Output is captured while the item runs; step outside the capture for the progress line.
            with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
                if not started[0]:
                    reporter.write_line("")
                    started[0] = True
                reporter.rewrite(f"    [speedrun] {self.name}: {line}", erase=True)
        return to_terminal

    def _waiting(self, what: str) -> None:
        """Lease waits show in verbose output (without xdist: the terminal; with it: the item's report)."""
        self.add_report_section("call", "speedrun", what)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and self.config.option.verbose > 0 and not hasattr(self.config, "workerinput"):
            reporter.write_line(f"[speedrun] {what}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, SpeedrunFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)
