"""Which interpreter an item's runs use, and which compat fixes its scripts get: one decision per task.

A task names a runtime (tasks/runtimes.py); every run of the task (the agent's solution, the start and target
records, calibration, smoke, repeats) uses the one interpreter chosen here, in this order:

1. `--speedrun-python PATH`: the user overrides everything (the GPU check runs the host's torch this way);
2. `--speedrun-runtime NAME=PATH` / ini `speedrun_runtimes`: the user's own interpreter for that runtime (a
   cluster's conda env); its torch must be the runtime's;
3. the runtime built into the cache (`pytest-speedrun runtime build NAME`, execution/runtime_build.py);
4. the interpreter pytest runs in, only where the runtime's probes pass there: torch imports, and every compat
   probe for a construct the task's scripts contain either passes or has a compat fix. Never a silent
   fallback: the record says `runtime: current, probes passed` or names the fix.
Otherwise the item skips, naming the command that builds the runtime.

A compat fix (tasks/compat.py) is applied to a pinned script that has the construct it repairs when the
runtime lists it or when the chosen interpreter fails the fix's probe. It is applied where the task's scripts
are materialised (`materialise`), so the start script the agent receives, the target (oracle, near-copy
rule) and calibration all see the same fixed text, and the result records it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from pytest_speedrun.errors import MissingInput, SpeedrunError, UsageError
from pytest_speedrun.files import write_atomic
from pytest_speedrun.judging.status import BUILT, CURRENT, MAPPED, PYTHON_OPTION, RuntimeKind
from pytest_speedrun.tasks.manifest import Record, Task
from pytest_speedrun.tasks.runtimes import Runtime, task_runtime

_TORCH_VERSION = "import importlib.metadata as m\ntry:\n print(m.version('torch'))\nexcept Exception:\n print('')"


@dataclass(frozen=True)
class RuntimeChoice:
    """The interpreter an item's runs use, where it came from, and the compat fixes its scripts get."""

    runtime: str  # the runtime the task names ("" : none)
    python: str
    kind: RuntimeKind
    torch: str  # torch's version in that interpreter, from its package metadata ("" when absent)
    compat: tuple[str, ...] = ()  # fixes to apply to the task's scripts that have their construct
    note: str = ""  # one line for the summary, e.g. "runtime torch-2.7.1 not built: current, probes passed"

    def describe(self) -> str:
        fixes = f"; compat: {', '.join(self.compat)}" if self.compat else ""
        return self.note or f"runtime: {self.runtime or 'none'} ({self.kind}, torch {self.torch or '?'}){fixes}"


def torch_version(python: str, timeout_s: float = 60.0) -> str:
    """torch's version as `python`'s package metadata says ("" when torch is not installed there). For this
    very interpreter the metadata is read in-process (what the subprocess would print, without its ~0.06 s)."""
    if _is_this_interpreter(python):
        import importlib.metadata

        try:
            return importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            return ""
    try:
        proc = subprocess.run([python, "-c", _TORCH_VERSION], capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"interpreter {python} cannot be run ({exc}); fix --speedrun-python or the runtime "
                         "mapping") from None
    return proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else ""


def _is_this_interpreter(python: str) -> bool:
    """Whether `python` is the running interpreter itself (the same file, not merely the same base Python: a
    venv's python resolves to its base's binary yet sees other packages)."""
    return Path(python).expanduser().absolute() == Path(sys.executable).absolute()


def _sources(task: Task) -> list[str]:
    return [r.script.path.read_text(encoding="utf-8") for r in (task.start, task.target) if r.script.path is not None]


def _constructs(task: Task) -> list:
    """The compat fixes whose construct one of the task's scripts contains."""
    from pytest_speedrun.tasks.compat import fixes_for

    found: dict[str, object] = {}
    for text in _sources(task):
        for fix in fixes_for(text):
            found.setdefault(fix.name, fix)
    return list(found.values())


class RuntimeChooser:
    """Chooses per task, remembering each interpreter's torch version and probe answers for the session."""

    def __init__(self, *, python: str = sys.executable, python_override: bool = False,
                 mapped: dict[str, str] | None = None, cache_dir: Path, probe=None) -> None:
        self.python, self.python_override = python, python_override
        self.mapped = dict(mapped or {})
        self.cache_dir = cache_dir
        self._probe = probe
        self._torch: dict[str, str] = {}
        self._probes: dict[str, dict[str, str | None]] = {}

    @classmethod
    def from_settings(cls, settings, probe=None) -> RuntimeChooser:
        return cls(python=settings.python, python_override=settings.python_override, mapped=dict(settings.runtimes),
                   cache_dir=settings.cache_dir, probe=probe)

    def torch_of(self, python: str) -> str:
        if python not in self._torch:
            self._torch[python] = torch_version(python)
        return self._torch[python]

    def probes_of(self, python: str) -> dict[str, str | None]:
        """{probe name: None (passes) or why it fails} for `python`, asked once per session (and cached on disk
        per interpreter by the probe module)."""
        if python not in self._probes:
            if self._probe is not None:
                self._probes[python] = dict(self._probe(python))
            else:
                from pytest_speedrun.execution.compat_probe import run_compat_probes

                self._probes[python] = run_compat_probes(python, cache_dir=self.cache_dir)
        return self._probes[python]

    def choose(self, task: Task) -> RuntimeChoice:
        """The interpreter and compat fixes of `task`; MissingInput (the item skips) naming the build command when
        its runtime is neither built nor mapped and the current interpreter cannot stand in for it."""
        runtime = task_runtime(task)
        if runtime is None:
            kind = PYTHON_OPTION if self.python_override else CURRENT
            return RuntimeChoice("", self.python, kind, self.torch_of(self.python))
        python, kind = self._interpreter(runtime)
        torch = self.torch_of(python)
        if kind == MAPPED and not runtime.torch_matches(torch):
            raise UsageError(f"--speedrun-runtime {runtime.name}={python}: that interpreter has torch "
                             f"{torch or 'missing'}, runtime {runtime.name} needs {runtime.torch}; map the right "
                             f"interpreter or build it: pytest-speedrun runtime build {runtime.name}")
        if kind == CURRENT and not torch:
            raise MissingInput(f"task {task.id}: runtime {runtime.name} is not built and this interpreter has no "
                               f"torch; run: pytest-speedrun runtime build {runtime.name}")
        fixes = self._fixes(task, runtime, python)
        note = f"runtime {runtime.name}: {kind}, torch {torch}"
        if kind == CURRENT:
            note = f"runtime {runtime.name} not built: current torch {torch}" + ("" if fixes else ", probes passed")
        if fixes:
            note += f"; compat: {', '.join(fixes)}"
        return RuntimeChoice(runtime.name, python, kind, torch, tuple(fixes), note)

    def _interpreter(self, runtime: Runtime) -> tuple[str, RuntimeKind]:
        if self.python_override:
            return self.python, PYTHON_OPTION
        if runtime.name in self.mapped:
            return self.mapped[runtime.name], MAPPED
        from pytest_speedrun.execution.runtime_build import built_python

        built = built_python(self.cache_dir, runtime.name)
        if built is not None:
            return str(built), BUILT
        return self.python, CURRENT

    def _fixes(self, task: Task, runtime: Runtime, python: str) -> list[str]:
        """The compat fixes for the constructs in the task's scripts that this runtime lists or that `python`
        fails the probe of. Every compat probe has its fix, so a failing probe never leaves a script unrunnable
        here; the interpreter is probed only when a script has a construct (a compile probe takes seconds)."""
        constructs = _constructs(task)
        if not constructs:
            return []
        if all(fix.name in runtime.compat for fix in constructs):
            return [fix.name for fix in constructs]
        probes = self.probes_of(python)
        return [fix.name for fix in constructs if fix.name in runtime.compat or probes.get(fix.probe) is not None]


def materialise(task: Task, choice: RuntimeChoice, cache_dir: Path) -> Task:
    """The task with every script that has a construct of `choice.compat` replaced by its fixed copy (written
    once under `<cache>/compat/`); unchanged when no fix applies."""
    if not choice.compat:
        return task
    from pytest_speedrun.tasks.compat import apply_fixes

    def fixed(end: Record) -> Record:
        path = end.script.path
        if path is None:
            return end
        text = path.read_text(encoding="utf-8")
        try:
            new, applied = apply_fixes(text, choice.compat)
        except SpeedrunError as exc:
            raise MissingInput(f"task {task.id}: compat fix {', '.join(choice.compat)} cannot repair {path}: {exc}")\
                from None
        if not applied:
            return end
        digest = hashlib.sha256(new.encode()).hexdigest()
        out = cache_dir / "compat" / "+".join(applied) / f"{digest[:20]}-{path.name}"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(out, new)
        return replace(end, script=replace(end.script, path=out))

    return replace(task, start=fixed(task.start), target=fixed(task.target))
