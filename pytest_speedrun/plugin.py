"""pytest hooks only: options, collection of task items, runtest wiring, reporting. Logic lives elsewhere."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_speedrun import hookspec
from pytest_speedrun.agents import llm
from pytest_speedrun.agents.base import Agent
from pytest_speedrun.agents.registry import available_agents, make_agent
from pytest_speedrun.errors import MissingInput, SpeedrunError
from pytest_speedrun.execution.resources import Lease
from pytest_speedrun.execution.sandbox import probe as probe_sandbox
from pytest_speedrun.execution.slurm import SlurmConfig, parse_extra
from pytest_speedrun.judging.status import LOCAL
from pytest_speedrun.pipeline.item import Execution, ItemResult
from pytest_speedrun.pipeline.session import SessionInfo, SpeedrunSession, outer_timeout_s
from pytest_speedrun.results import summary
from pytest_speedrun.settings import Settings, build_settings
from pytest_speedrun.tasks.hints import regime_label
from pytest_speedrun.tasks.manifest import Task, find_suite, load_task

SESSION_KEY = "speedrun_session"


@dataclass
class SpeedrunState:
    settings: Settings
    session: SpeedrunSession
    rows: list[dict[str, Any]] = field(default_factory=list)
    previous_sigterm: Any = None
    orphans: str = ""  # the line saying which runs of dead sessions were ended at the start


STATE = pytest.StashKey[SpeedrunState]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("speedrun", "LLM speedrunning benchmark (pytest-speedrun)")
    g.addoption("--speedrun-agent", metavar="AGENT", help="agent that solves the tasks: baseline, oracle, "
                "command:<shell command>, or a registered name. Without it, task items are skipped.")
    g.addoption("--speedrun-suite", action="append", default=[], metavar="NAME|DIR",
                help="task suite to collect (packaged name such as 'tiny', or a directory of manifests); repeatable")
    g.addoption("--speedrun-hints", default="0", metavar="REGIMES",
                help="comma-separated hint regimes: 0 (none), 1, 2, 3, 1+2, 1+2+3 (default: 0)")
    g.addoption("--speedrun-launcher", default=None, metavar="local|slurm",
                help="where training commands run: here (default) or as Slurm jobs through submitit")
    g.addoption("--speedrun-slurm-partition", metavar="NAME", help="Slurm partition (ini speedrun_slurm_partition)")
    g.addoption("--speedrun-slurm-folder", metavar="DIR",
                help="submitit job folder on a shared file system (default: the session's results dir)")
    g.addoption("--speedrun-max-jobs", type=int, default=None, metavar="N", help="cap on Slurm jobs in flight")
    g.addoption("--speedrun-smoke", action="store_true",
                help="run each task's start script for a few steps on small generated shards (no agent needed)")
    g.addoption("--speedrun-hints-dir", metavar="DIR",
                help="hints in the paper's layout (record_N/level_{1,2,3}_*.txt) instead of the suite's own")
    g.addoption("--speedrun-seeds", type=int, default=1, metavar="N", help="seeds per task and regime (default 1)")
    g.addoption("--speedrun-min-fsr", type=float, default=None, metavar="X", help="also fail items with FSR < X")
    g.addoption("--speedrun-calibrate", action="store_true", help="re-measure calibrated reference times")
    g.addoption("--speedrun-calibration-runs", type=int, default=1, metavar="N",
                help="runs per record when calibrating; their geometric mean is used (default 1)")
    g.addoption("--speedrun-recheck-after", type=float, default=900.0, metavar="S",
                help="re-check cached reference times with control runs when the last check on this machine is "
                     "older than S seconds (default 900; 0: every session)")
    g.addoption("--speedrun-results", metavar="DIR", help="results store (default: .speedrun/ in the rootdir)")
    g.addoption("--speedrun-cache-dir", metavar="DIR",
                help="cache for generated data and calibration (default: user cache dir, or $PYTEST_SPEEDRUN_CACHE)")
    g.addoption("--speedrun-timeout", type=float, default=None, metavar="S",
                help="training-run timeout in seconds (default: the task's launch.timeout_s)")
    g.addoption("--speedrun-agent-timeout", type=float, default=3600.0, metavar="S",
                help="timeout for a command: agent, wall-time cap of an LLM search (default 3600)")
    g.addoption("--speedrun-threads", type=int, default=None, metavar="N",
                help="CPU threads per run (default: usable cores / xdist workers)")
    g.addoption("--speedrun-python", metavar="PATH", help="interpreter for training runs (default: this one)")
    g.addoption("--speedrun-data", metavar="DIR", help="directory of FineWeb .bin shards (NanoGPT suite)")
    g.addoption("--speedrun-allow-suspicious", action="store_true",
                help="let implausible results pass (the reasons are still reported)")
    g.addoption("--speedrun-sandbox", default="none", metavar="none|netns|bwrap",
                help="isolate training runs: no network (netns), plus a read-only file system (bwrap)")
    g.addoption("--speedrun-agent-network", action="store_true", default=None,
                help="let command: agents reach the network inside the sandbox (an agent that calls an API); "
                "ini speedrun_agent_network")
    g.addoption("--speedrun-max-memory", metavar="SIZE", help="address-space limit per run process, e.g. 32G")
    g.addoption("--speedrun-gpus", metavar="IDS", help="GPU ids to use, e.g. 0,1,2,3 (default: CUDA_VISIBLE_DEVICES, "
                "else nvidia-smi -L)")
    g.addoption("--speedrun-resume", action="store_true",
                help="report items whose configuration already has a completed result in the store, not re-run them")
    g.addoption("--speedrun-repeats", type=int, default=1, metavar="K",
                help="run the final solution K times: mean time, and validity by a one-sided t-test (p < 0.01)")
    g.addoption("--speedrun-cumulative", action="store_true",
                help="task i+1 starts from the agent's passing solution of task i in this session")
    g.addoption("--speedrun-nproc", type=int, default=None, metavar="N",
                help="processes (GPUs) per run, overriding the manifest; unsupported counts skip")
    parser.addini("speedrun_suites", type="linelist", default=[],
                  help="suites collected when --speedrun-suite is not given")
    parser.addini("speedrun_agent", default="", help="default --speedrun-agent")
    parser.addini("speedrun_agent_network", type="bool", default=False, help="default --speedrun-agent-network")
    parser.addini("speedrun_launcher", default=LOCAL, help="default --speedrun-launcher")
    for key, what in (("partition", "Slurm partition"), ("account", "Slurm account"), ("qos", "Slurm QOS"),
                      ("gpus_per_node", "GPUs per job (default: the run's nproc on GPU tasks)"),
                      ("cpus_per_task", "CPUs per job"), ("mem_gb", "memory per job, GB"),
                      ("folder", "submitit job folder (shared file system)"), ("max_jobs", "Slurm jobs in flight")):
        parser.addini(f"speedrun_slurm_{key}", default="", help=what)
    parser.addini("speedrun_slurm_extra", type="linelist", default=[], help="more sbatch options, key=value per line")
    parser.addini("speedrun_slurm_setup", type="linelist", default=[],
                  help="shell lines run in the job before the command (module load, conda activate)")
    _add_llm_options(parser)


# LLM agent settings settable on the command line (`--speedrun-<key>`); see README "LLM agents".
LLM_CLI_KEYS = ("model", "base_url", "api_key_env", "temperature", "max_tokens", "reasoning_effort", "scaffold",
                "budget", "n0", "branch", "p_debug", "max_debug_depth", "reflections", "max_cost", "max_llm_calls",
                "max_llm_tokens", "llm_retries", "llm_cache", "prompts")


def _add_llm_options(parser: pytest.Parser) -> None:
    g = parser.getgroup("speedrun-llm", "LLM agents of pytest-speedrun (claude, openai, deepseek, local)")
    g.addoption("--speedrun-model", metavar="NAME", help="the model (default: the agent's table, else its preset)")
    g.addoption("--speedrun-base-url", metavar="URL", help="the OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    g.addoption("--speedrun-api-key-env", metavar="VAR", help="environment variable holding the API key")
    g.addoption("--speedrun-temperature", type=float, metavar="T", help="sampling temperature")
    g.addoption("--speedrun-max-tokens", type=int, metavar="N", help="output tokens per response")
    g.addoption("--speedrun-reasoning-effort", metavar="LEVEL", help="reasoning effort, e.g. low, medium, high")
    g.addoption("--speedrun-scaffold", metavar="NAME",
                help="single (default: one call, one run), flat, tree, forest, aide, multi-aide")
    g.addoption("--speedrun-budget", type=int, metavar="M", help="search nodes per item (default 20)")
    g.addoption("--speedrun-n0", type=int, metavar="N0", help="initial drafts: forest, aide, multi-aide (default 3)")
    g.addoption("--speedrun-branch", type=int, metavar="N", help="children per step: tree, forest, multi-aide "
                "(default 3)")
    g.addoption("--speedrun-p-debug", type=float, metavar="P", help="probability of a debug step: aide, multi-aide "
                "(default 0.5)")
    g.addoption("--speedrun-max-debug-depth", type=int, metavar="D", help="D_max, consecutive debug steps "
                "(default 5)")
    g.addoption("--speedrun-reflections", type=int, metavar="N", help="retries of an edit that does not apply "
                "(default 3)")
    g.addoption("--speedrun-max-cost", type=float, metavar="USD", help="LLM cost cap per item")
    g.addoption("--speedrun-max-llm-calls", type=int, metavar="N", help="LLM call cap per item")
    g.addoption("--speedrun-max-llm-tokens", type=int, metavar="N", help="LLM token cap per item (input + output)")
    g.addoption("--speedrun-llm-retries", type=int, metavar="N", help="retries on 429, 5xx and timeouts (default 5)")
    g.addoption("--speedrun-llm-cache", metavar="MODE", help="response cache: off (default), read, write, readwrite")
    g.addoption("--speedrun-prompts", metavar="DIR", help="directory of prompt templates overriding the packaged ones")
    for key in llm.SEARCH_KEYS:
        parser.addini(f"speedrun_{key}", default=None, help=f"LLM agents: {key} (see README, LLM agents)")
    for name in llm.PRESETS:
        for key in llm.AGENT_KEYS:
            parser.addini(f"speedrun_agent_{name}_{key}", default=None,
                          type="linelist" if key == "extra_headers" else "string", help=f"{name} agent: {key}")


def _llm_source(config: pytest.Config, cache_dir: Path | None) -> llm.ConfigSource:
    """Where LLM agents read their settings: the rootdir's pyproject tables, ini keys and CLI options."""
    inipath = config.inipath
    pyproject = inipath if inipath is not None and inipath.name == "pyproject.toml" else \
        config.rootpath / "pyproject.toml"
    cli = {key: config.getoption(f"speedrun_{key}") for key in LLM_CLI_KEYS}
    if cli["prompts"] is not None:
        cli["prompts"] = str(Path(cli["prompts"]).resolve())

    def ini(key: str) -> Any:
        try:
            return config.getini(key)
        except ValueError:  # a custom agent name has no registered ini keys
            return None

    return llm.ConfigSource(tables=llm.read_agent_tables(pyproject), tables_path=str(pyproject), ini=ini, cli=cli,
                            cache_dir=cache_dir, base_dir=config.rootpath)


def _path(value: str | None, base: Path) -> Path | None:
    return None if value is None else (base / Path(value).expanduser()).resolve()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "speedrun: a pytest-speedrun benchmark task item")
    config.addinivalue_line("markers", "speedrun_gpus(n): GPUs the speedrun_gpus fixture leases (default 1)")
    opt = config.option
    cwd = Path.cwd()
    try:
        settings = build_settings(
            agent=opt.speedrun_agent or config.getini("speedrun_agent") or None,
            suites=opt.speedrun_suite or config.getini("speedrun_suites"), hints=opt.speedrun_hints,
            seeds=opt.speedrun_seeds, min_fsr=opt.speedrun_min_fsr, calibrate=opt.speedrun_calibrate,
            calibration_runs=opt.speedrun_calibration_runs, recheck_after_s=opt.speedrun_recheck_after,
            results_dir=_path(opt.speedrun_results, cwd) or config.rootpath / ".speedrun",
            cache_dir=_path(opt.speedrun_cache_dir, cwd), timeout_s=opt.speedrun_timeout,
            agent_timeout_s=opt.speedrun_agent_timeout, threads=opt.speedrun_threads, python=opt.speedrun_python,
            data_dir=_path(opt.speedrun_data, cwd), allow_suspicious=opt.speedrun_allow_suspicious,
            sandbox=opt.speedrun_sandbox, max_memory=opt.speedrun_max_memory, nproc=opt.speedrun_nproc,
            gpus=opt.speedrun_gpus, resume=opt.speedrun_resume, repeats=opt.speedrun_repeats,
            cumulative=opt.speedrun_cumulative, hints_dir=_path(opt.speedrun_hints_dir, cwd),
            smoke=opt.speedrun_smoke, launcher=opt.speedrun_launcher or config.getini("speedrun_launcher"),
            slurm=_slurm_config(config, cwd),
            agent_network=bool(opt.speedrun_agent_network or config.getini("speedrun_agent_network")),
        )
        agent = _make_agent(config, settings.agent, settings.cache_dir) if settings.agent else None
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
        lines.append("speedrun " + probe_sandbox(s.sandbox).describe())
    return lines


def _item_timeout(config: pytest.Config, task, settings) -> float:
    """The item's pytest-timeout: the outer safety net, or the user's timeout if that is shorter (a marker would
    otherwise override what CI asked for). pytest-timeout's documented order: --timeout, PYTEST_TIMEOUT, ini."""
    outer = outer_timeout_s(task, settings)
    user = config.getoption("timeout", None)
    if user is None:
        user = os.environ.get("PYTEST_TIMEOUT") or config.getini("timeout") or None
    try:
        user_s = float(user) if user is not None else 0.0
    except ValueError:
        user_s = 0.0  # pytest-timeout reports a malformed value itself
    return min(outer, user_s) if user_s > 0 else outer


def _slurm_config(config: pytest.Config, cwd: Path) -> SlurmConfig:
    """Slurm settings from ini keys, with the --speedrun-slurm-* options on top."""
    def ini(key: str) -> str:
        return str(config.getini(f"speedrun_slurm_{key}") or "").strip()

    def number(key: str, cli: int | None = None) -> int | None:
        if cli is not None:
            return cli
        value = ini(key)
        if not value:
            return None
        try:
            return int(value)
        except ValueError:
            raise SpeedrunError(f"ini speedrun_slurm_{key} = {value!r}: expected an integer") from None
    folder = config.option.speedrun_slurm_folder or ini("folder")
    return SlurmConfig(
        partition=config.option.speedrun_slurm_partition or ini("partition") or None,
        account=ini("account") or None, qos=ini("qos") or None, gpus_per_node=number("gpus_per_node"),
        cpus_per_task=number("cpus_per_task"), mem_gb=number("mem_gb"),
        extra=parse_extra(config.getini("speedrun_slurm_extra")), setup=tuple(config.getini("speedrun_slurm_setup")),
        folder=_path(folder, cwd) if folder else None, max_jobs=number("max_jobs", config.option.speedrun_max_jobs))


def _make_agent(config: pytest.Config, spec: str, cache_dir: Path | None = None) -> Agent:
    name, sep, arg = spec.partition(":")
    hooked = config.hook.pytest_speedrun_make_agent(name=name, arg=arg if sep else None, config=config)
    if hooked is not None:
        return hooked
    return make_agent(spec, extra=llm.llm_factories(_llm_source(config, cache_dir)))


class XdistHooks:
    """Registered only when pytest-xdist is present: hand the controller's session (id, GPUs, lease pool) to
    every worker."""

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[SESSION_KEY] = node.config.stash[STATE].session.info.to_json()


# --- collection -------------------------------------------------------------------------------------------


class SuiteCollector(pytest.Collector):
    """A suite of task manifests, collected independently of the command-line paths (`--speedrun-suite`)."""

    def collect(self) -> list[pytest.Collector]:
        return [ManifestFile.from_parent(self, path=p, nodeid=f"{self.nodeid}/{p.name}")
                for p in sorted(self.path.glob("*.toml"))]


class ManifestFile(pytest.File):
    """One manifest: its items, parametrized over hint regimes × seeds. A bad manifest fails only itself."""

    def collect(self) -> list[SpeedrunItem]:
        task = load_task(self.path)
        settings = self.config.stash[STATE].settings
        items = []
        for regime in settings.regimes:
            for seed in range(settings.seeds):
                name = f"{task.id}[h{regime_label(regime)}-s{seed}]"
                item = SpeedrunItem.from_parent(self, name=name, task=task, regime=regime, seed=seed)
                item.add_marker(pytest.mark.speedrun)
                if settings.cumulative:  # one chain per worker: the tasks must run in order
                    item.add_marker(pytest.mark.xdist_group("speedrun-cumulative"))
                if self.config.pluginmanager.hasplugin("timeout"):
                    item.add_marker(pytest.mark.timeout(_item_timeout(self.config, task, settings)))
                items.append(item)
        return items

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, SpeedrunError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ManifestFile | None:
    """Manifests given as paths: `pytest tasks/nanogpt` (any `tasks/<suite>/*.toml`) collects that suite."""
    if file_path.suffix == ".toml" and file_path.parent.parent.name == "tasks":
        return ManifestFile.from_parent(parent, path=file_path)
    return None


def _link_previous(items: list[pytest.Item]) -> None:
    """Cumulative mode needs each task's predecessor in its suite (the task whose target it starts from)."""
    suite_items = [i for i in items if isinstance(i, SpeedrunItem)]
    by_target = {(i.task.suite, i.task.target.record): i.task for i in suite_items}
    for item in suite_items:
        item.previous_task = by_target.get((item.task.suite, item.task.start.record))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
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
    _link_previous(items)


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


class RowCollector:
    """Collects the speedrun rows of every item report. On the controller under xdist these are the reports
    the workers sent, so the summary is written once, by the controller."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = dict(report.user_properties)
        if report.when == "call" and "speedrun_task" in row:
            self.rows.append(dict(row, nodeid=report.nodeid))


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
        for name, value in summary.suite_properties(state.rows):
            xml.add_global_property(name, value)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or STATE not in config.stash:
        return
    rows = config.stash[STATE].rows
    if not rows:
        return
    terminalreporter.write_sep("=", "speedrun")
    for line in summary.summary_lines(rows):
        terminalreporter.write_line(line)
    session = config.stash[STATE].session
    agent = session.agent
    if agent is not None and not getattr(agent, "trusted", False):  # baseline and oracle need no answers hidden
        # Agents that start processes (command: and its presets) say whether they need the network.
        networked = hasattr(agent, "needs_network") and (agent.needs_network or session.settings.agent_network)
        exposure = probe_sandbox(session.settings.sandbox).exposure(networked)
        if exposure:
            terminalreporter.write_line(exposure)
    logs = sorted((session.settings.results_dir / session.info.session_id).glob("progress-*.log"))
    if logs:
        terminalreporter.write_line("live progress per worker: " + ", ".join(str(p) for p in logs))
