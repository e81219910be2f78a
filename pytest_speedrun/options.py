"""The plugin's options, declared once: one table (OPTIONS) feeds `addoption`, the ini keys that back an option,
and the keyword arguments of `settings.build_settings` (which validates them); `settings_from_config` reads a
pytest config through the same table. The Slurm and LLM-agent settings have tables of their own here, read
the same way (SLURM_INI, LLM_CLI_KEYS). `pytest-speedrun doctor` reads the same ini keys (execution/doctor.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_speedrun.agents import llm
from pytest_speedrun.agents.base import Agent
from pytest_speedrun.agents.registry import make_agent
from pytest_speedrun.errors import SpeedrunError
from pytest_speedrun.judging.status import LOCAL
from pytest_speedrun.settings import Settings, build_settings

if TYPE_CHECKING:  # loaded by slurm_config, for a session that reads the Slurm settings
    from pytest_speedrun.execution.slurm import SlurmConfig


@dataclass(frozen=True)
class Option:
    """`--speedrun-<flag>`, stored as `speedrun_<name>`, passed to build_settings as `setting` (default: name).
    `ini`: the ini key's type when an ini key `speedrun_<ini_name>` backs the option (used when the option is
    not given); `path`: resolved against the directory pytest was started from."""

    name: str
    help: str
    type: Callable[[str], Any] | None = None
    default: Any = None
    metavar: str | None = None
    action: str | None = None
    setting: str | None = None
    ini: str | None = None
    ini_name: str | None = None
    ini_help: str | None = None
    ini_default: Any = None  # None: the empty value of the ini type ("", [] or False)
    path: bool = False

    @property
    def flag(self) -> str:
        return "--speedrun-" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return "speedrun_" + self.name

    @property
    def ini_key(self) -> str:
        return "speedrun_" + (self.ini_name or self.name)


OPTIONS: tuple[Option, ...] = (
    Option("agent", "agent that solves the tasks: baseline, oracle, command:<shell command>, or a registered name. "
           "Without it, task items are skipped.", metavar="AGENT", ini="string", ini_help="default --speedrun-agent"),
    Option("suite", "task suite to collect (packaged name such as 'tiny', or a directory of manifests); repeatable",
           action="append", default=[], metavar="NAME|DIR", setting="suites", ini="linelist", ini_name="suites",
           ini_help="suites collected when --speedrun-suite is not given"),
    Option("hints", "comma-separated hint regimes: 0 (none), 1, 2, 3, 1+2, 1+2+3 (default: 0)", default="0",
           metavar="REGIMES"),
    Option("launcher", "where training commands run: here (default) or as Slurm jobs through submitit",
           metavar="local|slurm", ini="string", ini_default=LOCAL, ini_help="default --speedrun-launcher"),
    Option("smoke", "run each task's start script for a few steps on small generated shards (no agent needed)",
           action="store_true"),
    Option("hints_dir", "hints in the paper's layout (record_N/level_{1,2,3}_*.txt) instead of the suite's own",
           metavar="DIR", path=True),
    Option("seeds", "seeds per task and regime (default 1)", type=int, default=1, metavar="N"),
    Option("min_fsr", "also fail items with FSR < X", type=float, metavar="X"),
    Option("calibrate", "re-measure calibrated reference times", action="store_true"),
    Option("calibration_runs", "runs per record when calibrating; their geometric mean is used (default 1)",
           type=int, default=1, metavar="N"),
    Option("recheck_after", "re-check cached reference times with control runs when the last check on this "
           "machine is older than S seconds (default 900; 0: every session)", type=float, default=900.0,
           metavar="S", setting="recheck_after_s"),
    Option("results", "results store (default: .speedrun/ in the rootdir)", metavar="DIR", setting="results_dir",
           path=True),
    Option("cache_dir", "cache for generated data and calibration (default: user cache dir, or "
           "$PYTEST_SPEEDRUN_CACHE)", metavar="DIR", path=True),
    Option("timeout", "training-run timeout in seconds (default: the task's launch.timeout_s)", type=float,
           metavar="S", setting="timeout_s"),
    Option("agent_timeout", "timeout for a command: agent, wall-time cap of an LLM search (default 3600)",
           type=float, default=3600.0, metavar="S", setting="agent_timeout_s"),
    Option("threads", "CPU threads (and pinned cores) per timed CPU run (default 1)", type=int, metavar="N"),
    Option("timed_runs", "how many timed CPU runs may run at once on this host, across xdist workers and "
           "sessions (default 1: they take turns; agents still work in parallel)", type=int, default=1,
           metavar="N"),
    Option("python", "interpreter for every training run, overriding each task's runtime (default: the task's "
           "runtime, else this one)", metavar="PATH"),
    Option("runtime", "use this interpreter for a runtime a task names, e.g. torch-2.7.1=/opt/envs/t271/bin/python; "
           "repeatable (ini speedrun_runtimes, one NAME = PATH per line)", action="append", default=[],
           metavar="NAME=PATH", setting="runtimes", ini="linelist", ini_name="runtimes"),
    Option("data", "directory of FineWeb .bin shards (NanoGPT suite)", metavar="DIR", setting="data_dir", path=True),
    Option("allow_suspicious", "let implausible results pass (the reasons are still reported)", action="store_true"),
    Option("sandbox", "isolate training runs: no network (netns), plus only the system, the Python environment, "
           "the data and the workspace visible (bwrap)", default="none", metavar="none|netns|bwrap"),
    Option("agent_network", "let command: agents reach the network inside the sandbox (an agent that calls an "
           "API); ini speedrun_agent_network", action="store_true", ini="bool",
           ini_help="default --speedrun-agent-network"),
    Option("max_memory", "address-space limit per run process, e.g. 32G", metavar="SIZE"),
    Option("gpus", "GPU ids to use, e.g. 0,1,2,3 (default: CUDA_VISIBLE_DEVICES, else nvidia-smi -L); only "
           "with this option do tasks without supported_gpu_counts (the tiny suite) run on a GPU",
           metavar="IDS"),
    Option("resume", "report items whose configuration already has a completed result in the store, not re-run "
           "them", action="store_true"),
    Option("repeats", "run the final solution K times: mean time, and validity by a one-sided t-test (p < 0.01)",
           type=int, default=1, metavar="K"),
    Option("cumulative", "task i+1 starts from the agent's passing solution of task i in this session",
           action="store_true"),
    Option("nproc", "processes (GPUs) per run, overriding the manifest; unsupported counts skip", type=int,
           metavar="N"),
)

# Slurm: ini keys (speedrun_slurm_<key>), three of them also options (SLURM_OPTIONS).
SLURM_INI = (("partition", "Slurm partition"), ("account", "Slurm account"), ("qos", "Slurm QOS"),
             ("gpus_per_node", "GPUs per job (default: the run's nproc on GPU tasks)"),
             ("cpus_per_task", "CPUs per job"), ("mem_gb", "memory per job, GB"),
             ("folder", "submitit job folder (shared file system)"), ("max_jobs", "Slurm jobs in flight"))
SLURM_OPTIONS = (
    Option("slurm_partition", "Slurm partition (ini speedrun_slurm_partition)", metavar="NAME"),
    Option("slurm_folder", "submitit job folder on a shared file system (default: the session's results dir)",
           metavar="DIR"),
    Option("max_jobs", "cap on Slurm jobs in flight", type=int, metavar="N"),
)

# LLM agent settings settable on the command line (`--speedrun-<key>`); see README "LLM agents".
LLM_OPTIONS = (
    Option("model", "the model (default: the agent's table, else its preset)", metavar="NAME"),
    Option("base_url", "the OpenAI-compatible endpoint, e.g. http://host:8000/v1", metavar="URL"),
    Option("api_key_env", "environment variable holding the API key", metavar="VAR"),
    Option("temperature", "sampling temperature", type=float, metavar="T"),
    Option("max_tokens", "output tokens per response", type=int, metavar="N"),
    Option("reasoning_effort", "reasoning effort, e.g. low, medium, high", metavar="LEVEL"),
    Option("scaffold", "single (default: one call, one run), flat, tree, forest, aide, multi-aide", metavar="NAME"),
    Option("budget", "search nodes per item (default 20)", type=int, metavar="M"),
    Option("n0", "initial drafts: forest, aide, multi-aide (default 3)", type=int, metavar="N0"),
    Option("branch", "children per step: tree, forest, multi-aide (default 3)", type=int, metavar="N"),
    Option("p_debug", "probability of a debug step: aide, multi-aide (default 0.5)", type=float, metavar="P"),
    Option("max_debug_depth", "D_max, consecutive debug steps (default 5)", type=int, metavar="D"),
    Option("reflections", "retries of an edit that does not apply (default 3)", type=int, metavar="N"),
    Option("max_cost", "LLM cost cap per item", type=float, metavar="USD"),
    Option("max_llm_calls", "LLM call cap per item", type=int, metavar="N"),
    Option("max_llm_tokens", "LLM token cap per item (input + output)", type=int, metavar="N"),
    Option("llm_retries", "retries on 429, 5xx and timeouts (default 5)", type=int, metavar="N"),
    Option("llm_cache", "response cache: off (default), read, write, readwrite", metavar="MODE"),
    Option("prompts", "directory of prompt templates overriding the packaged ones", metavar="DIR"),
)
LLM_CLI_KEYS = tuple(o.name for o in LLM_OPTIONS)


def _add(group: Any, opt: Option) -> None:
    kwargs: dict[str, Any] = {"dest": opt.dest, "help": opt.help}
    if opt.action is not None:
        kwargs["action"] = opt.action
        if opt.action == "append":
            kwargs["default"] = list(opt.default or [])
        elif opt.ini is not None:  # a flag backed by an ini key: None tells "not given" from False
            kwargs["default"] = None
    else:
        kwargs.update(default=opt.default, metavar=opt.metavar)
        if opt.type is not None:
            kwargs["type"] = opt.type
    group.addoption(opt.flag, **kwargs)


def add_options(parser: pytest.Parser) -> None:
    """Register every option and ini key of the tables."""
    g = parser.getgroup("speedrun", "LLM speedrunning benchmark (pytest-speedrun)")
    for opt in (*OPTIONS, *SLURM_OPTIONS):
        _add(g, opt)
    for opt in OPTIONS:
        if opt.ini is not None:
            parser.addini(opt.ini_key, type=opt.ini, default=_ini_default(opt), help=opt.ini_help or opt.help)
    for key, what in SLURM_INI:
        parser.addini(f"speedrun_slurm_{key}", default="", help=what)
    parser.addini("speedrun_slurm_extra", type="linelist", default=[], help="more sbatch options, key=value per line")
    parser.addini("speedrun_slurm_setup", type="linelist", default=[],
                  help="shell lines run in the job before the command (module load, conda activate)")
    llm_group = parser.getgroup("speedrun-llm", "LLM agents of pytest-speedrun (claude, openai, deepseek, local)")
    for opt in LLM_OPTIONS:
        _add(llm_group, opt)
    for key in llm.SEARCH_KEYS:
        parser.addini(f"speedrun_{key}", default=None, help=f"LLM agents: {key} (see README, LLM agents)")
    for name in llm.PRESETS:
        for key in llm.AGENT_KEYS:
            parser.addini(f"speedrun_agent_{name}_{key}", default=None,
                          type="linelist" if key == "extra_headers" else "string", help=f"{name} agent: {key}")


def _ini_default(opt: Option) -> Any:
    if opt.ini_default is not None:
        return opt.ini_default
    return {"bool": False, "linelist": []}.get(opt.ini or "", "")


def resolve_path(value: str | None, base: Path) -> Path | None:
    return None if value is None else (base / Path(value).expanduser()).resolve()


def settings_from_config(config: pytest.Config) -> Settings:
    """The session's Settings from the options (an ini key where the option is not given); SpeedrunError on a
    bad value, naming the option."""
    cwd = Path.cwd()
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value = config.getoption(opt.dest)
        if opt.ini is not None and value in (None, [], ""):
            value = config.getini(opt.ini_key)
        if opt.path:
            value = resolve_path(value, cwd)
        values[opt.setting or opt.name] = value
    values["agent"] = values["agent"] or None
    values["agent_network"] = bool(values["agent_network"])
    values["results_dir"] = values["results_dir"] or config.rootpath / ".speedrun"
    return build_settings(**values, slurm=slurm_config(config, cwd))


def slurm_config(config: pytest.Config, cwd: Path) -> SlurmConfig:
    """Slurm settings from ini keys, with the --speedrun-slurm-* options on top."""
    from pytest_speedrun.execution.slurm import SlurmConfig, parse_extra

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
        folder=resolve_path(folder, cwd) if folder else None,
        max_jobs=number("max_jobs", config.option.speedrun_max_jobs))


def llm_source(config: pytest.Config, cache_dir: Path | None) -> llm.ConfigSource:
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


def agent_from_config(config: pytest.Config, spec: str, cache_dir: Path | None = None) -> Agent:
    """The agent `spec` names: a plugin's (the pytest_speedrun_make_agent hook) first, else the registry's."""
    name, sep, arg = spec.partition(":")
    hooked = config.hook.pytest_speedrun_make_agent(name=name, arg=arg if sep else None, config=config)
    if hooked is not None:
        return hooked
    source = llm_source(config, cache_dir)
    if name not in llm.PRESETS and "preset" not in source.tables.get(name, {}):
        return make_agent(spec)  # not an LLM agent: the client and the scaffolds stay unimported
    return make_agent(spec, extra=llm.llm_factories(source))
