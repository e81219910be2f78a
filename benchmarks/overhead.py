"""Harness overhead: one tiny item through pytest vs. the same script run directly, with a profile by stage.

    python benchmarks/overhead.py [--task tiny04] [--repeats 5] [--out benchmarks/overhead.last.txt]

Both sides run the task's target record (what the oracle agent submits) under the same env contract and
thread count. The item runs from a copy of the task whose references are its manifest's figures, so neither
calibration nor the witness (issue 20: one run of the start record next to each scored run of a calibrated task)
is counted: they are measurements the harness makes on purpose, and the report gives the witness's cost
separately (one direct run of the start record, timed in the same loop). Each repeat runs, interleaved so that
machine noise hits all alike:

* the script directly (`python script`);
* the item through plain `python -m pytest` (the figure the paired differences and the ratio use);
* the same item through this file's profiling mode (`--inner`): the same `pytest.main` in a process that first
  wraps the harness's stage functions (by qualified name, from outside: no package code changes) in wall-clock
  timers, wraps pytest's hooks, and watches the pump (the parent of the training run) for its own CPU seconds
  in /proc/<pid>/stat, read once it has exited and before pytest reaps it. The first `--profile-runs` repeats
  do this.

It prints the per-pair differences (median, min/max, IQR, MAD) beside the ratio of medians, the stage table
(median over the profiled runs), the pump's CPU against the run's, interpreter start and import costs
(`python -c "import pytest_speedrun.plugin"`, `python -X importtime` top entries), and the judging rules timed
in isolation on the task's own scripts as an untrusted agent's solution would meet them. `--out` gets the whole
report.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

T_ENTER = time.time()  # the profiling mode's first moment in Python (interpreter start ends here)
LAUNCH_ENV = "OVERHEAD_LAUNCHED_AT"  # the outer process's time.time() just before it started the inner one
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# ---------------------------------------------------------------------------------------------- pure figures


def paired_summary(direct: Sequence[float], through: Sequence[float]) -> dict[str, Any]:
    """Per-pair differences (through pytest minus direct) and their median and spread, beside the ratio of
    medians. IQR: the quartiles' distance ("inclusive" method); MAD: the median absolute deviation."""
    if len(direct) != len(through) or not direct:
        raise ValueError(f"paired_summary needs pairs: {len(direct)} direct vs {len(through)} through pytest")
    diffs = [p - d for d, p in zip(direct, through)]
    med = statistics.median(diffs)
    if len(diffs) >= 2:
        q1, _, q3 = statistics.quantiles(diffs, n=4, method="inclusive")
    else:
        q1 = q3 = diffs[0]
    d_med, p_med = statistics.median(direct), statistics.median(through)
    return {"diffs": diffs, "median": med, "min": min(diffs), "max": max(diffs), "iqr": q3 - q1,
            "mad": statistics.median(abs(x - med) for x in diffs), "direct_median": d_med,
            "through_median": p_med, "ratio_of_medians": p_med / d_med if d_med else float("nan")}


def parse_proc_stat(text: str) -> tuple[str, float, float]:
    """(state, own CPU s, reaped children's CPU s) from a /proc/<pid>/stat line (clock ticks converted)."""
    fields = text.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return fields[0], (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


def parse_importtime(stderr: str) -> list[tuple[str, int, int]]:
    """(module, self µs, cumulative µs) of each `python -X importtime` line."""
    out = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3:
            continue
        try:
            out.append((parts[2].strip(), int(parts[0]), int(parts[1])))
        except ValueError:
            continue
    return out


def median_of(profiles: Sequence[dict[str, float]], key: str) -> float | None:
    values = [p[key] for p in profiles if p.get(key) is not None]
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------------------------- profiling mode

# (timer name, "module:qualified.attr"): where the harness's stage functions are looked up at call time, so a
# wrapper set there is what runs. Names imported into another module are patched in that module. A target that
# no longer exists is reported as missing, not fatal (the package changes under this benchmark).
TARGETS: tuple[tuple[str, str], ...] = (
    ("plugin.pytest_configure", "pytest_speedrun.plugin:pytest_configure"),
    ("options.settings_from_config", "pytest_speedrun.options:settings_from_config"),
    ("options.agent_from_config", "pytest_speedrun.options:agent_from_config"),
    ("SpeedrunSession.__init__", "pytest_speedrun.pipeline.session:SpeedrunSession.__init__"),
    ("SpeedrunSession.end_orphans", "pytest_speedrun.pipeline.session:SpeedrunSession.end_orphans"),
    ("ManifestFile.collect", "pytest_speedrun.items:ManifestFile.collect"),
    ("SpeedrunItem.runtest", "pytest_speedrun.items:SpeedrunItem.runtest"),
    ("SpeedrunSession.run", "pytest_speedrun.pipeline.session:SpeedrunSession.run"),
    ("SpeedrunSession.materialise", "pytest_speedrun.pipeline.session:SpeedrunSession.materialise"),
    ("runtime.torch_version", "pytest_speedrun.execution.runtime:torch_version"),
    ("session.config_key", "pytest_speedrun.pipeline.session:config_key"),
    ("SpeedrunSession.run_settings", "pytest_speedrun.pipeline.session:SpeedrunSession.run_settings"),
    ("session.probe_sandbox", "pytest_speedrun.pipeline.session:probe_sandbox"),
    ("SpeedrunSession.dataset", "pytest_speedrun.pipeline.session:SpeedrunSession.dataset"),
    ("session.control_task", "pytest_speedrun.pipeline.session:control_task"),
    ("Calibrator.reference", "pytest_speedrun.pipeline.calibrate:Calibrator.reference"),
    ("Calibrator.session_check", "pytest_speedrun.pipeline.calibrate:Calibrator.session_check"),
    ("run_item", "pytest_speedrun.pipeline.session:run_item"),
    ("replay.mark_started", "pytest_speedrun.pipeline.replay:mark_started"),
    ("prepare_workspace", "pytest_speedrun.pipeline.item:prepare_workspace"),
    ("DataGuard.__init__", "pytest_speedrun.data.guard:DataGuard.__init__"),
    ("NodeRunner.__init__", "pytest_speedrun.pipeline.item:NodeRunner.__init__"),
    ("agent.solve", "pytest_speedrun.agents.static:OracleAgent.solve"),
    ("agent.solve", "pytest_speedrun.agents.static:BaselineAgent.solve"),
    ("item.write_atomic", "pytest_speedrun.pipeline.item:write_atomic"),
    ("store.write_diff", "pytest_speedrun.results.store:write_diff"),
    ("execute_script", "pytest_speedrun.pipeline.item:execute_script"),
    ("runner.run", "pytest_speedrun.pipeline.session:runner_run"),
    ("runner.run", "pytest_speedrun.execution.runner:run"),
    ("runner.pump_command", "pytest_speedrun.execution.runner:pump_command"),
    ("runner.kill_run", "pytest_speedrun.execution.runner:kill_run"),
    ("judge_execution", "pytest_speedrun.pipeline.item:judge_execution"),
    ("metrics.parse_log", "pytest_speedrun.judging.metrics:parse_log"),
    ("integrity.judge", "pytest_speedrun.judging.integrity:judge"),
    ("timeline.of_run", "pytest_speedrun.judging.timeline:of_run"),
    ("runner.read_cpu_stats", "pytest_speedrun.execution.runner:read_cpu_stats"),
    ("item.save_outcome", "pytest_speedrun.pipeline.item:save_outcome"),
    ("DataGuard.changes", "pytest_speedrun.data.guard:DataGuard.changes"),
    ("checks.check", "pytest_speedrun.judging.checks:check"),
    ("checks.run_verdict", "pytest_speedrun.judging.checks:run_verdict"),
    ("leaks.leak_reasons", "pytest_speedrun.judging.checks:leak_reasons"),
    ("static_rules.static_reasons", "pytest_speedrun.judging.checks:static_reasons"),
    ("contract.contract_reasons", "pytest_speedrun.judging.static_rules:files_contract_reasons"),
    ("nearcopy.near_copy_reasons", "pytest_speedrun.judging.static_rules:files_near_copy_reasons"),
    ("valpath.val_path_reasons", "pytest_speedrun.judging.static_rules:files_val_path_reasons"),
    ("dataflow.Flow.__init__", "pytest_speedrun.judging.dataflow:Flow.__init__"),
    ("dataflow.Flow.canon", "pytest_speedrun.judging.dataflow:Flow.canon"),
    ("checks.timeline_reasons", "pytest_speedrun.judging.checks:timeline_reasons"),
    ("integrity.suspicious_reasons", "pytest_speedrun.judging.integrity:suspicious_reasons"),
    ("integrity.final_verdict", "pytest_speedrun.judging.integrity:final_verdict"),
    ("item._result", "pytest_speedrun.pipeline.item:_result"),
    ("record.write", "pytest_speedrun.results.record:write"),
    ("summary.user_properties", "pytest_speedrun.results.summary:user_properties"),
    ("summary.failure_message", "pytest_speedrun.results.summary:failure_message"),
    ("summary.summary_lines", "pytest_speedrun.results.summary:summary_lines"),
    ("summary.suite_properties", "pytest_speedrun.results.summary:suite_properties"),
    ("plugin.probe_sandbox", "pytest_speedrun.execution.sandbox:probe"),
    ("SpeedrunSession.close", "pytest_speedrun.pipeline.session:SpeedrunSession.close"),
)

HOOKS = ("pytest_sessionstart", "pytest_collection", "pytest_runtest_protocol",
         "pytest_runtest_setup", "pytest_runtest_call", "pytest_runtest_teardown", "pytest_runtest_makereport",
         "pytest_runtest_logreport", "pytest_sessionfinish", "pytest_terminal_summary", "pytest_unconfigure")

PER_PLUGIN_HOOKS = ("pytest_runtest_setup", "pytest_runtest_call", "pytest_runtest_teardown",
                    "pytest_runtest_makereport", "pytest_runtest_logreport", "pytest_runtest_logstart",
                    "pytest_runtest_logfinish", "pytest_report_teststatus", "pytest_sessionfinish",
                    "pytest_terminal_summary", "pytest_unconfigure")


class Timers:
    """Cumulative wall seconds and calls per name; a name's re-entrant calls (recursion) count once."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.first: dict[str, float] = {}  # time.time() of a name's first entry
        self.active: dict[str, int] = {}

    def enter(self, name: str) -> bool:
        outer = not self.active.get(name)
        self.active[name] = self.active.get(name, 0) + 1
        if outer:
            self.first.setdefault(name, time.time())
        return outer

    def leave(self, name: str, seconds: float | None) -> None:
        self.active[name] -= 1
        if seconds is not None:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + 1


def timed(timers: Timers, name: str, fn: Callable, after: Callable[[tuple, Any], None] | None = None) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer = timers.enter(name)
        t0 = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        finally:
            timers.leave(name, time.perf_counter() - t0 if outer else None)
        if after is not None and outer:
            after(args, result)
        return result
    return wrapper


class PumpWatch(threading.Thread):
    """Polls this process's child running pump.py; reads its /proc stat once more when it has exited (a zombie
    until pytest reaps it, which pytest does within ~50 ms: Popen.wait with a timeout polls), so the pump's own
    CPU and its reaped run's CPU are final. Falls back to the last reading (flagged) when the zombie was missed."""

    def __init__(self, every_s: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.every_s, self.stop = every_s, threading.Event()
        self.pid: int | None = None
        self.reading: tuple[str, float, float] | None = None
        self.startup_cpu_s: float | None = None  # the pump's CPU when its command first shows as its child
        self.command_end_cpu_s: float | None = None  # ... when its command no longer does (exited and reaped)
        self.final = False

    def _children(self, pid: int | str) -> list[int]:
        out = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                out += [int(x) for x in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
        return out

    def _find(self) -> int | None:
        for pid in self._children("self"):
            try:
                if b"pump.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                continue
        return None

    def run(self) -> None:
        while not self.final:
            if self.pid is None:
                self.pid = self._find()
            if self.pid is not None:
                try:
                    self.reading = parse_proc_stat(Path(f"/proc/{self.pid}/stat").read_text())
                except (OSError, IndexError, ValueError):
                    break  # reaped: the last reading stands
                if self.command_end_cpu_s is None:
                    has_child = bool(self._children(self.pid))
                    if self.startup_cpu_s is None and has_child:
                        self.startup_cpu_s = self.reading[1]
                    elif self.startup_cpu_s is not None and not has_child:
                        self.command_end_cpu_s = self.reading[1]
                if self.reading[0] in "ZX":
                    self.final = True
                    break
            if self.stop.wait(self.every_s) and self.pid is None:
                break

    def result(self) -> dict[str, Any]:
        if self.reading is None:
            return {}
        return {"pump_cpu_s": self.reading[1], "reaped_run_cpu_s": self.reading[2], "final": self.final,
                "pump_startup_cpu_s": self.startup_cpu_s, "pump_command_end_cpu_s": self.command_end_cpu_s}


def _resolve(target: str) -> tuple[Any, str]:
    module, _, path = target.partition(":")
    owner: Any = importlib.import_module(module)
    *parents, attr = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    if not hasattr(owner, attr):
        raise AttributeError(f"{target}: no such attribute")
    return owner, attr


def _install(timers: Timers, record: dict[str, Any]) -> list[str]:
    """Wrap every TARGETS function in its timer; returns the targets that are missing."""
    missing = []

    def after_execute(args: tuple, ex: Any) -> None:  # the item's runs: what the run was, against the script
        m, tl = ex.metrics, ex.timeline
        record["executions"].append({
            "log": str(ex.outcome.log_path), "wall_s": ex.outcome.wall_s, "cpu": dict(ex.cpu),
            "queued_s": getattr(ex, "queued_s", None),
            "train_time_s": m.train_time_ms / 1000.0 if m is not None else None,
            "first_step_s": tl.first_step_s if tl is not None else None,
            "last_line_s": tl.last_line_s if tl is not None else None,
            "first_step_cpu_s": tl.first_step_cpu_s if tl is not None else None,
            "observed_train_s": tl.train_time_observed_ms / 1000.0
            if tl is not None and tl.train_time_observed_ms is not None else None,
        })

    for name, target in TARGETS:
        try:
            owner, attr = _resolve(target)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{target} ({exc})")
            continue
        fn = getattr(owner, attr)
        if name == "runner.run":
            setattr(owner, attr, _watched_run(timers, fn, record))
        else:
            setattr(owner, attr, timed(timers, name, fn, after_execute if name == "execute_script" else None))
    return missing


def _watched_run(timers: Timers, fn: Callable, record: dict[str, Any]) -> Callable:
    @functools.wraps(fn)
    def run(spec: Any, *args: Any, **kwargs: Any) -> Any:
        watch = PumpWatch()
        watch.start()
        timers.enter("runner.run")
        t0 = time.perf_counter()
        try:
            return fn(spec, *args, **kwargs)
        finally:
            elapsed = time.perf_counter() - t0
            timers.leave("runner.run", elapsed)
            watch.stop.set()
            watch.join(timeout=2.0)
            record["runs"].append({"log": str(spec.log_path), "seconds": elapsed, **watch.result()})
    return run


class HookTimer:
    """A pytest plugin whose wrappers (outermost) time every implementation of each hook in HOOKS. pytest_configure
    is historic, which takes no wrappers: its start is marked by a first implementation instead (its end is the
    session's start, give or take pytest_cmdline_main's own few steps)."""

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        for hook in HOOKS:
            setattr(self, hook, self._wrapper(hook))
        self.pytest_configure = self._configure_mark(timers)

    def pytest_collection_finish(self, session: Any) -> None:
        """Each plugin's own implementation of the later hooks gets a timer too (plain ones: a wrapper's cost is
        in its hook's total), so a slow third-party plugin shows by name."""
        for hook in PER_PLUGIN_HOOKS:
            for impl in getattr(session.config.pluginmanager.hook, hook).get_hookimpls():
                if impl.plugin is self or impl.hookwrapper or getattr(impl, "wrapper", False):
                    continue
                impl.function = timed(self.timers, f"{hook} [{impl.plugin_name}]", impl.function)

    @staticmethod
    def _configure_mark(timers: Timers) -> Callable:
        def pytest_configure() -> None:
            timers.first.setdefault("pytest_configure", time.time())
        import pytest

        return pytest.hookimpl(tryfirst=True)(pytest_configure)

    def _wrapper(self, hook: str) -> Callable:
        timers = self.timers

        def wrapper() -> Any:  # no arguments: pluggy passes a hook implementation only the names it declares
            outer = timers.enter(hook)
            t0 = time.perf_counter()
            try:
                return (yield)
            finally:
                timers.leave(hook, time.perf_counter() - t0 if outer else None)
        import pytest

        return pytest.hookimpl(wrapper=True, tryfirst=True)(wrapper)


def inner_main(out: Path, pytest_args: list[str]) -> int:
    """The profiling mode: time imports, wrap the stages, run pytest, write what was measured to `out`."""
    record: dict[str, Any] = {"t_enter": T_ENTER, "launched_at": float(os.environ.get(LAUNCH_ENV, T_ENTER)),
                              "executions": [], "runs": []}
    import pytest

    record["t_pytest_imported"] = time.time()
    import pytest_speedrun.plugin  # noqa: F401

    record["t_plugin_imported"] = time.time()
    timers = Timers()
    record["missing"] = _install(timers, record)
    record["t_patched"] = time.time()
    record["t_main_start"] = time.time()
    rc = pytest.main(pytest_args, plugins=[HookTimer(timers)])
    record["t_main_end"] = time.time()
    record.update(rc=int(rc), seconds=timers.seconds, calls=timers.calls, first=timers.first)
    out.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return int(rc)


# --------------------------------------------------------------------------------------- stage table (outer)

# (indent, label, key): the rows of the stage table; keys are timer names or figures derived in `flatten`.
ROWS: tuple[tuple[int, str, str], ...] = (
    (0, "total through pytest (profiled run, launch to exit)", "total"),
    (1, "interpreter start (exec to the first line of Python)", "interp_start"),
    (1, "import pytest", "import_pytest"),
    (1, "import pytest_speedrun.plugin (after pytest)", "import_plugin"),
    (1, "[profiler: wrapping, imports it pulls forward]", "profiler_setup"),
    (1, "pytest start-up: args, plugins, entry points, ini", "pytest_startup"),
    (1, "pytest_configure, all plugins (to session start)", "configure_all"),
    (2, "pytest_speedrun's pytest_configure", "plugin.pytest_configure"),
    (3, "options.settings_from_config", "options.settings_from_config"),
    (3, "options.agent_from_config", "options.agent_from_config"),
    (3, "SpeedrunSession.__init__", "SpeedrunSession.__init__"),
    (3, "SpeedrunSession.end_orphans (/proc scan)", "SpeedrunSession.end_orphans"),
    (1, "pytest_sessionstart", "pytest_sessionstart"),
    (1, "collection (pytest_collection)", "pytest_collection"),
    (2, "ManifestFile.collect", "ManifestFile.collect"),
    (1, "pytest_runtest_protocol (the item)", "pytest_runtest_protocol"),
    (2, "setup", "pytest_runtest_setup"),
    (2, "call", "pytest_runtest_call"),
    (3, "SpeedrunSession.run", "SpeedrunSession.run"),
    (4, "materialise (resolve, runtime choice)", "SpeedrunSession.materialise"),
    (5, "runtime.torch_version (subprocess)", "runtime.torch_version"),
    (4, "config_key (script hashes)", "session.config_key"),
    (4, "run_settings (dataset, sandbox probe)", "SpeedrunSession.run_settings"),
    (5, "dataset", "SpeedrunSession.dataset"),
    (5, "sandbox probe", "session.probe_sandbox"),
    (4, "control_task (suite load)", "session.control_task"),
    (4, "Calibrator.reference (cached references)", "Calibrator.reference"),
    (5, "Calibrator.session_check (control check)", "Calibrator.session_check"),
    (4, "run_item", "run_item"),
    (5, "replay.mark_started", "replay.mark_started"),
    (5, "workspace: prepare_workspace", "prepare_workspace"),
    (5, "data guard: DataGuard() digests before", "DataGuard.__init__"),
    (5, "NodeRunner() (target text)", "NodeRunner.__init__"),
    (5, "agent.solve", "agent.solve"),
    (5, "solution files (write_atomic, write_diff)", "solution_files"),
    (5, "execute_script", "execute_script"),
    (6, "lease: waiting for cores another run holds", "queued_s"),
    (6, "runner.run (the item's run)", "item_run_s"),
    (7, "pump's own start and end (wall outside its command)", "pump_outside"),
    (7, "command start to first step line (imports, data)", "first_step_s"),
    (7, "script's train_time (reported)", "train_time_s"),
    (7, "untimed work between (validation, warm-up)", "command_other"),
    (7, "last line to command end (script exit, reader)", "command_tail"),
    (7, "kill_run (group kill, /proc environ scan)", "runner.kill_run"),
    (6, "judge_execution", "judge_execution"),
    (7, "metrics.parse_log", "metrics.parse_log"),
    (7, "integrity.judge", "integrity.judge"),
    (7, "timeline.of_run", "timeline.of_run"),
    (7, "runner.read_cpu_stats", "runner.read_cpu_stats"),
    (5, "save_outcome", "item.save_outcome"),
    (5, "data guard: DataGuard.changes", "DataGuard.changes"),
    (5, "checks.check", "checks.check"),
    (6, "run_verdict", "checks.run_verdict"),
    (6, "leaks (workspace scan)", "leaks.leak_reasons"),
    (6, "static rules", "static_rules.static_reasons"),
    (7, "env contract", "contract.contract_reasons"),
    (7, "near-copy", "nearcopy.near_copy_reasons"),
    (7, "val-path", "valpath.val_path_reasons"),
    (8, "data flow (Flow + canon)", "dataflow"),
    (6, "timeline rules", "checks.timeline_reasons"),
    (6, "suspicion rules", "integrity.suspicious_reasons"),
    (6, "final verdict", "integrity.final_verdict"),
    (5, "_result (score, noise interval)", "item._result"),
    (5, "record.write", "record.write"),
    (3, "summary.user_properties + failure_message", "summary_item"),
    (2, "makereport (all plugins)", "pytest_runtest_makereport"),
    (2, "logreport (all plugins)", "pytest_runtest_logreport"),
    (2, "teardown", "pytest_runtest_teardown"),
    (1, "pytest_sessionfinish (all plugins)", "pytest_sessionfinish"),
    (2, "pytest_terminal_summary (all plugins; the terminal's sessionfinish calls it)", "pytest_terminal_summary"),
    (3, "summary.summary_lines", "summary.summary_lines"),
    (1, "pytest_unconfigure", "pytest_unconfigure"),
    (2, "SpeedrunSession.close", "SpeedrunSession.close"),
    (1, "pytest.main returns to process exit", "shutdown"),
    (0, "harness outside the item's run (total - runner.run)", "outside_run"),
)


def flatten(rec: dict[str, Any], launched: float, ended: float) -> dict[str, float | None]:
    """One profiled run's figures by ROWS key, in seconds."""
    s, first = rec["seconds"], rec["first"]
    v: dict[str, float | None] = dict(s)
    v["total"] = ended - launched
    v["interp_start"] = rec["t_enter"] - launched
    v["import_pytest"] = rec["t_pytest_imported"] - rec["t_enter"]
    v["import_plugin"] = rec["t_plugin_imported"] - rec["t_pytest_imported"]
    v["profiler_setup"] = rec["t_patched"] - rec["t_plugin_imported"]
    v["pytest_startup"] = first["pytest_configure"] - rec["t_main_start"] if "pytest_configure" in first else None
    if "pytest_configure" in first and "pytest_sessionstart" in first:
        v["configure_all"] = first["pytest_sessionstart"] - first["pytest_configure"]
    v["shutdown"] = ended - rec["t_main_end"]
    v["solution_files"] = s.get("item.write_atomic", 0.0) + s.get("store.write_diff", 0.0)
    v["dataflow"] = s.get("dataflow.Flow.__init__", 0.0) + s.get("dataflow.Flow.canon", 0.0)
    v["summary_item"] = s.get("summary.user_properties", 0.0) + s.get("summary.failure_message", 0.0)
    item_runs = [r for r in rec["runs"] if any(r["log"] == e["log"] for e in rec["executions"])]
    ex = rec["executions"][0] if rec["executions"] else None
    run = item_runs[0] if item_runs else None
    v["item_run_s"] = run["seconds"] if run else None
    if ex is not None and run is not None:
        cmd_wall = ex["cpu"].get("wall_s")
        v["pump_outside"] = ex["wall_s"] - cmd_wall if cmd_wall is not None else None
        v["queued_s"] = ex.get("queued_s")
        v["first_step_s"], v["train_time_s"] = ex["first_step_s"], ex["train_time_s"]
        if ex["first_step_s"] is not None and ex["last_line_s"] is not None and ex["train_time_s"] is not None:
            v["command_other"] = ex["last_line_s"] - ex["first_step_s"] - ex["train_time_s"]
        if cmd_wall is not None and ex["last_line_s"] is not None:
            v["command_tail"] = cmd_wall - ex["last_line_s"]
        v["outside_run"] = v["total"] - run["seconds"]
        for key in ("pump_cpu_s", "reaped_run_cpu_s", "pump_startup_cpu_s"):
            v[key] = run.get(key)
        start_cpu, end_cpu = run.get("pump_startup_cpu_s"), run.get("pump_command_end_cpu_s")
        if start_cpu is not None and end_cpu is not None and run.get("pump_cpu_s") is not None:
            v["pump_during_cpu_s"] = end_cpu - start_cpu
            v["pump_after_cpu_s"] = run["pump_cpu_s"] - end_cpu
        v["pump_final"] = 1.0 if run.get("final") else 0.0
        v["run_cpu_s"] = ex["cpu"].get("cpu_s")
        v["run_wall_s"] = ex["wall_s"]
        v["first_step_cpu_s"] = ex["first_step_cpu_s"]
    v["control_runs"] = float(max(0, len(rec["runs"]) - len(item_runs)))
    return v


def stage_table(profiles: list[dict[str, float | None]]) -> list[str]:
    lines = [f"{'stage':<80} {'median s':>9} {'min':>8} {'max':>8}"]
    for indent, label, key in ROWS:
        values = [p[key] for p in profiles if p.get(key) is not None]
        if not values:
            lines.append(f"{'  ' * indent + label:<80} {'-':>9}")
            continue
        lines.append(f"{'  ' * indent + label:<80} {statistics.median(values):9.3f} {min(values):8.3f} "
                     f"{max(values):8.3f}")
    return lines


SCRIPT_OWN = ("first_step_s", "train_time_s", "command_other", "command_tail")  # the direct run pays these too


def plugin_costs(profiles: list[dict[str, float | None]], floor_s: float = 0.005) -> list[str]:
    """Each plugin's implementation of the later hooks (PER_PLUGIN_HOOKS) whose median is over `floor_s`."""
    keys = sorted({k for p in profiles for k in p if k.endswith("]") and " [" in k})
    rows = [(m, k) for k in keys if (m := median_of(profiles, k)) is not None and m >= floor_s]
    return [f"{m:7.3f} s  {k}" for m, k in sorted(rows, reverse=True)] or [f"(none over {floor_s * 1000:.0f} ms)"]


def top_costs(profiles: list[dict[str, float | None]], n: int = 5) -> list[str]:
    """The largest costs the direct run does not pay: leaf rows, and each parent row's rest (what the rows
    indented under it do not account for, per profiled run), by median."""
    found = []
    for i, (indent, label, key) in enumerate(ROWS):
        if key in ("total", "outside_run", "profiler_setup", *SCRIPT_OWN):
            continue
        children = []
        for child_indent, _, child_key in ROWS[i + 1:]:
            if child_indent <= indent:
                break
            if child_indent == indent + 1:
                children.append(child_key)
        if not children:
            med = median_of(profiles, key)
            if med is not None:
                found.append((med, label.strip()))
            continue
        rests = [p[key] - sum(p.get(c) or 0.0 for c in children) for p in profiles if p.get(key) is not None]
        if rests and statistics.median(rests) > 0:
            found.append((statistics.median(rests), f"{label.strip()}: the rest, outside the rows under it"))
    return [f"{m:7.3f} s  {label}" for m, label in sorted(found, reverse=True)[:n]]


# ---------------------------------------------------------------------------------------------- outer run


# pytest's exit status when the session ran and an item failed: on a busy machine the oracle's run can be judged
# suspicious (the timeline rules) or slower than its reference. The harness did the same work, so the time counts;
# the report says how many such runs there were. Any other status is an error.
ITEM_FAILED = 1
FAILED_RUNS: list[str] = []


def _timed_run(cmd: list[str], cwd: Path, env: dict[str, str], item_may_fail: bool = False) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - t0
    if proc.returncode == ITEM_FAILED and item_may_fail:
        FAILED_RUNS.append(_failure_line(proc.stdout))
    elif proc.returncode != 0:
        raise SystemExit(f"overhead.py: {' '.join(cmd[:4])} ... failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def _failure_line(stdout: str) -> str:
    """The item's status line from pytest's output (the first line naming a status), for the report."""
    return next((line.strip() for line in stdout.splitlines() if ": status " in line), "an item failed")


def _profiled_run(pytest_args: list[str], cwd: Path, out: Path) -> dict[str, float | None]:
    env = dict(os.environ)
    launched = time.time()
    env[LAUNCH_ENV] = repr(launched)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--inner", str(out), "--", *pytest_args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    ended = time.time()
    if proc.returncode == ITEM_FAILED and out.exists():
        FAILED_RUNS.append(_failure_line(proc.stdout))
    elif proc.returncode != 0 or not out.exists():
        raise SystemExit(f"overhead.py: the profiled pytest run failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rec = json.loads(out.read_text())
    if rec["missing"]:
        print("overhead.py: targets not found (renamed?): " + "; ".join(rec["missing"]), file=sys.stderr)
    return flatten(rec, launched, ended)


def import_costs(repeats: int, cwd: Path) -> tuple[list[str], dict[str, float]]:
    """Median wall of `python -c ...` for a bare interpreter, pytest and the plugin; importtime's top entries."""
    env = dict(os.environ)
    figures = {}
    for label, code in (("python -c pass", "pass"), ("import pytest", "import pytest"),
                        ("import pytest_speedrun.plugin", "import pytest_speedrun.plugin")):
        figures[label] = statistics.median(_timed_run([sys.executable, "-c", code], cwd, env)
                                           for _ in range(max(3, repeats)))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import pytest_speedrun.plugin"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600, check=True)
    entries = parse_importtime(proc.stderr)
    lines = [f"{label:<34} median {s:6.3f} s" for label, s in figures.items()]
    lines.append("python -X importtime -c 'import pytest_speedrun.plugin' (one run; cumulative includes children):")
    lines.append("  top by cumulative:")
    lines += [f"    {cum / 1e6:6.3f} s  {name}" for name, _, cum in sorted(entries, key=lambda e: -e[2])[:15]]
    lines.append("  top by self:")
    lines += [f"    {own / 1e6:6.3f} s  {name}" for name, own, _ in sorted(entries, key=lambda e: -e[1])[:12]]
    heavy = [(cum, name) for name, _, cum in entries if name.split(".")[0] not in ("pytest_speedrun", "_pytest",
                                                                                   "pytest", "pluggy")]
    top_level = sorted(((cum, name) for cum, name in heavy if "." not in name), reverse=True)[:8]
    lines.append("  third-party and stdlib top-level packages by cumulative: " +
                 ", ".join(f"{name} {cum / 1e6:.3f} s" for cum, name in top_level))
    return lines, figures


def rules_in_isolation(task: Any, work: Path, dataset_root: Path, log: Path | None, repeats: int) -> list[str]:
    """Each judging rule on the task's own scripts, as an untrusted agent's solution (the target's text) meets
    it: warm, in this process, best of `repeats`. The oracle is trusted, so the item itself skips near-copy
    and the leak scan."""
    from pytest_speedrun.data.guard import DataGuard
    from pytest_speedrun.execution.runner import timeline_path
    from pytest_speedrun.judging import metrics, timeline
    from pytest_speedrun.judging.contract import contract_reasons
    from pytest_speedrun.judging.leaks import leak_reasons
    from pytest_speedrun.judging.nearcopy import near_copy_reasons
    from pytest_speedrun.judging.valpath import val_path_reasons, val_paths

    start = task.start.script.path.read_text(encoding="utf-8")
    target = task.target.script.path.read_text(encoding="utf-8")
    ws = work / "rules-workspace"
    ws.mkdir(exist_ok=True)
    (ws / "train_gpt2.py").write_text(target, encoding="utf-8")
    guard = DataGuard(dataset_root)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("env contract (start vs solution)", lambda: contract_reasons(start, target, "train_gpt2.py")),
        ("near-copy (solution vs target)", lambda: near_copy_reasons(target, target, "train_gpt2.py")),
        ("val-path (both scripts)", lambda: val_path_reasons(start, target, "train_gpt2.py")),
        ("  val_paths(start) alone (data flow of one script)", lambda: val_paths(start)),
        ("leak scan (workspace with the solution)", lambda: leak_reasons(ws, task, ())),
        ("data guard: DataGuard(root)", lambda: DataGuard(dataset_root)),
        ("data guard: changes()", guard.changes),
    ]
    if log is not None and log.exists():
        cases += [("metrics.parse_log (the item's run.log)", lambda: metrics.parse_log(log, ws / "train_gpt2.py")),
                  ("timeline.of_run (the item's run.log)",
                   lambda: timeline.of_run(log, timeline_path(log), ws / "train_gpt2.py"))]
    from pytest_speedrun.judging.static_rules import static_reasons

    nodes = iter(range(1_000_000))
    cases.append(("static rules per search node (start, target cached)",
                  lambda: static_reasons(start, f"{target}\n# node {next(nodes)}\n", target)))
    lines = [f"{'rule':<52} {'best s':>8} {'median s':>9}  (cold: each script analysed afresh, except the last row)"]
    for label, fn in cases:
        times = []
        for _ in range(max(3, repeats)):
            if not label.startswith("static rules per search node"):
                _forget_analyses()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        lines.append(f"{label:<52} {min(times):8.4f} {statistics.median(times):9.4f}")
    return lines


def _forget_analyses() -> None:
    """Empty the per-process caches of the static rules and the data guard, so a rule is timed as one item's
    first judgement meets it (the caches serve the items, nodes and repeats after it)."""
    from pytest_speedrun.data import guard
    from pytest_speedrun.judging import contract, nearcopy, valpath

    guard._SEEN.clear()
    for module in (contract, nearcopy, valpath):
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


def manifest_copy(task: Any, folder: Path) -> Path:
    """A one-task suite: `task` with its manifest's reference figures (no calibration, no witness) and its files
    named by absolute path."""
    folder.mkdir(parents=True)
    text = task.manifest.read_text(encoding="utf-8").replace('source = "calibrate"', 'source = "manifest"')
    for rel in ("records/", "hints/"):
        text = text.replace(f'"{rel}', f'"{task.manifest.parent}/{rel}')
    (folder / task.manifest.name).write_text(text, encoding="utf-8")
    return folder


def outer_main(args: argparse.Namespace) -> int:
    from pytest_speedrun.data.dataset import ensure_tiny_dataset
    from pytest_speedrun.execution.resources import cpu_threads
    from pytest_speedrun.execution.runner import contract_env
    from pytest_speedrun.tasks.manifest import find_suite, load_task

    if args.repeats < 1:
        raise SystemExit(f"overhead.py: --repeats={args.repeats}: must be at least 1")
    task = load_task(find_suite("tiny") / f"{args.task}.toml")
    report: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        report.append(line)

    with tempfile.TemporaryDirectory() as tmp:
        cache, work = Path(tmp) / "cache", Path(tmp) / "work"
        work.mkdir()
        dataset = ensure_tiny_dataset(cache)
        threads = cpu_threads()
        env = contract_env(train_glob=dataset.train_glob, val_glob=dataset.val_glob, val_tokens=dataset.val_tokens,
                           task_env=task.launch.env, seed=0, threads=threads)
        script = task.target.script.path
        if script is None:
            raise SystemExit(f"overhead.py: task {args.task}: its target script is not available locally")
        suite = manifest_copy(task, Path(tmp) / "suite")
        pytest_args = ["-p", "no:cacheprovider", "-q", f"--rootdir={work}", f"--speedrun-suite={suite}",
                       "--speedrun-agent=oracle", f"--speedrun-cache-dir={cache}",
                       f"--speedrun-results={work / 'results'}", f"--speedrun-threads={threads}", "-k", args.task]
        pytest_args += [arg for name in args.disable_plugin for arg in ("-p", f"no:{name}")]
        pytest_cmd = [sys.executable, "-m", "pytest", *pytest_args]
        # Calibration (t_i and t_{i+1}) once, outside the measurement.
        _timed_run(pytest_cmd, work, dict(os.environ), item_may_fail=True)
        FAILED_RUNS.clear()

        direct, through, profiles, witness = [], [], [], []
        for i in range(args.repeats):
            direct.append(_timed_run([sys.executable, str(script)], work, env))
            witness.append(_timed_run([sys.executable, str(task.start.script.path)], work, env))
            through.append(_timed_run(pytest_cmd, work, dict(os.environ), item_may_fail=True))
            if i < args.profile_runs:
                profiles.append(_profiled_run(pytest_args, work, Path(tmp) / f"profile-{i}.json"))
            print(f"  repeat {i + 1}/{args.repeats}: direct {direct[-1]:.2f} s, pytest {through[-1]:.2f} s"
                  + (f", profiled {profiles[-1]['total']:.2f} s" if i < args.profile_runs else ""), flush=True)
        imports, _ = import_costs(args.repeats, work)
        logs = sorted((work / "results").rglob("run.log"), key=lambda p: p.stat().st_mtime)
        rules = rules_in_isolation(task, Path(tmp), dataset.root, logs[-1] if logs else None, args.repeats)

    pairs = paired_summary(direct, through)
    say(f"task {args.task}: {script.name}, {threads} thread(s), {args.repeats} interleaved repeats, "
        f"{len(profiles)} profiled; python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    if args.disable_plugin:
        say("third-party pytest plugins switched off on the pytest side (-p no:NAME; not part of the harness): "
            + ", ".join(args.disable_plugin))
    if FAILED_RUNS:
        say(f"{len(FAILED_RUNS)} pytest run(s) ended with the item failed (their times are kept: the harness did the "
            f"same work): {FAILED_RUNS[0]}")
    say()
    say("== paired differences (plain `python -m pytest` minus direct, per repeat)")
    for k, (d, p) in enumerate(zip(direct, through)):
        say(f"  pair {k + 1}: direct {d:7.2f} s  pytest {p:7.2f} s  difference {p - d:+6.2f} s")
    say(f"direct  python script : median {pairs['direct_median']:7.2f} s")
    say(f"through pytest item   : median {pairs['through_median']:7.2f} s")
    say(f"paired difference     : median {pairs['median']:+.2f} s, min {pairs['min']:+.2f}, max {pairs['max']:+.2f}, "
        f"IQR {pairs['iqr']:.2f}, MAD {pairs['mad']:.2f}")
    say(f"ratio of medians      : {pairs['ratio_of_medians']:.3f}  (difference of medians "
        f"{pairs['through_median'] - pairs['direct_median']:+.2f} s)")
    say(f"not counted above     : the witness of a calibrated task, one run of record {task.start.record} next to "
        f"the scored run, median {statistics.median(witness):.2f} s here when it runs (a cold session reuses the "
        "calibration run instead)")
    if profiles:
        say(f"profiled runs (wrapped timers): median {median_of(profiles, 'total'):.2f} s against plain pytest "
            f"{statistics.median(through[:len(profiles)]):.2f} s over the same repeats (the profiler's own cost "
            "plus noise)")
        say()
        say(f"== stages of one item (median of {len(profiles)} profiled runs; wall seconds, cumulative: a row "
            "includes the rows indented under it)")
        for line in stage_table(profiles):
            say(line)
        say()
        say("top 5 costs outside the training command (leaf rows):")
        for line in top_costs(profiles):
            say("  " + line)
        say("hook implementations by plugin (median, over 5 ms):")
        for line in plugin_costs(profiles):
            say("  " + line)
        controls = median_of(profiles, "control_runs") or 0
        if controls:
            say(f"note: {controls:.0f} control-check run(s) of the session check fell inside a profiled run "
                "(Calibrator.session_check)")
        say()
        say("== the pump's CPU during the item's run (its own /proc stat, read after it exited)")
        pump, run_cpu = median_of(profiles, "pump_cpu_s"), median_of(profiles, "reaped_run_cpu_s")
        stats_cpu, startup = median_of(profiles, "run_cpu_s"), median_of(profiles, "pump_startup_cpu_s")
        finals = sum(int(p.get("pump_final") or 0) for p in profiles)
        if pump is not None:
            say(f"pump CPU              : median {pump:.3f} s ({finals}/{len(profiles)} read final; others are "
                "the last reading before it was reaped)")
            during, after = median_of(profiles, "pump_during_cpu_s"), median_of(profiles, "pump_after_cpu_s")
            if startup is not None:
                say(f"  before its command  : median {startup:.3f} s (interpreter, imports, CPU probes)")
            if during is not None and after is not None:
                say(f"  while it ran        : median {during:.3f} s (line pump, timeline CPU reads, sampling, "
                    "parent watch)")
                say(f"  after it ended      : median {after:.3f} s (CPU probes, stats, exit)")
                if run_cpu:
                    say(f"  while it ran / run's CPU: {during / run_cpu:.2%}")
            if run_cpu:
                say(f"run's CPU (reaped)    : median {run_cpu:.3f} s -> pump/run = {pump / run_cpu:.2%}")
            if stats_cpu:
                say(f"run's CPU (pump stats): median {stats_cpu:.3f} s -> pump/run = {pump / stats_cpu:.2%}")
            per = [p["pump_cpu_s"] / p["reaped_run_cpu_s"] for p in profiles
                   if p.get("pump_cpu_s") is not None and p.get("reaped_run_cpu_s")]
            if per:
                say("  per profiled run    : " + ", ".join(f"{x:.2%}" for x in per))
        else:
            say("pump CPU              : not observed (no pump process found)")
        first_cpu = median_of(profiles, "first_step_cpu_s")
        if first_cpu is not None:
            say(f"run's CPU by the first step line (timeline): median {first_cpu:.3f} s")
    say()
    say("== interpreter start and imports (separate processes)")
    for line in imports:
        say(line)
    say()
    say(f"== judging rules in isolation (tiny04 scripts as an untrusted solution; warm; best of "
        f"{max(3, args.repeats)})")
    for line in rules:
        say(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n", encoding="utf-8")
    print(f"report written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--inner"]:
        if len(argv) < 3 or argv[2] != "--":
            raise SystemExit("overhead.py --inner OUT.json -- PYTEST_ARGS...: the profiling mode's arguments")
        return inner_main(Path(argv[1]), argv[3:])
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--task", default="tiny04")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile-runs", type=int, default=None,
                    help="repeats that also run a profiled pytest item (default: all)")
    ap.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                    help="pass -p no:NAME to pytest (repeatable): measure without a third-party plugin that is "
                         "installed here but is no part of the harness, e.g. hypothesispytest")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "overhead.last.txt")
    args = ap.parse_args(argv)
    if args.profile_runs is None:
        args.profile_runs = args.repeats
    return outer_main(args)


if __name__ == "__main__":
    sys.exit(main())
