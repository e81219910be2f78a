"""bwrap hides the answer: runs and `command:` agents cannot read the target record, other levels' hints, the
record cache, calibration copies or other items' results, yet keep their workspace, the data and torch.

The answer holders are laid out under a directory of /var/tmp that the sandbox is told to keep (as a project
directory holding its own .speedrun results is), so only the masks can hide them there. Tests that start
bwrap skip, saying why, where it cannot run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakes import CONNECT, write_suite
from pytest_speedrun.agents.base import AgentContext
from pytest_speedrun.agents.command import CommandAgent
from pytest_speedrun.data.dataset import Dataset
from pytest_speedrun.errors import AgentError
from pytest_speedrun.execution.answers import git_dirs, installed_copies, session_answer_holders, task_answer_holders
from pytest_speedrun.execution.sandbox import Sandbox, private_roots, probe
from pytest_speedrun.pipeline.item import RunSettings, execute_script, prepare_workspace
from pytest_speedrun.settings import build_settings
from pytest_speedrun.tasks.manifest import Task, available_suites, find_suite, load_suite, load_task, suite_dirs

REPO = Path(__file__).resolve().parent.parent
# The search an agent would try first (as in the issue), without the kernel's pseudo file systems.
FIND = ["find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune", "-o", "-name", "record_*.py",
        "-print"]


@pytest.fixture
def bwrap() -> Sandbox:
    sandbox = probe("bwrap")
    if not sandbox.available:
        pytest.skip(sandbox.describe())
    return sandbox


@pytest.fixture
def host_dir():
    """A scratch directory outside /tmp (bwrap replaces /tmp, which would hide anything there anyway)."""
    base = Path("/var/tmp")
    if not (base.is_dir() and os.access(base, os.W_OK)):
        pytest.skip("/var/tmp is not writable: no place outside /tmp for the answer holders")
    path = Path(tempfile.mkdtemp(prefix="speedrun-masks-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Layout:
    """A session's files as the harness lays them out: a suite, a cache, a results store, an item."""

    task: Task
    sandbox: Sandbox
    dataset: Dataset
    workspace: Path
    script: Path
    secrets: dict[str, Path]  # what must stay hidden, by name


def _layout(root: Path, sandbox: Sandbox, agent_network: bool = False) -> Layout:
    suite = write_suite(root / "suites")
    task = load_task(suite / "mini01.toml")
    cache, results = root / "cache", root / "results"
    record_cache = cache / "records" / f"{hashlib.sha256(b'target').hexdigest()}.py"
    calibration = cache / "calibration" / "fp" / "mini01-target" / "train_gpt2.py"
    other_item = results / "s1" / "mini02_h0-s0_" / "solution.py"
    for path in (record_cache, calibration, other_item):
        path.parent.mkdir(parents=True)
        path.write_text(task.target.script.path.read_text())
    data = cache / "tiny-data" / "k"
    data.mkdir(parents=True)
    (data / "val_000000.bin").write_bytes(b"\x00" * 64)
    art = results / "s1" / "mini01_h1-s0_"
    art.mkdir(parents=True)
    workspace, script, _ = prepare_workspace(task, (1,), art)
    settings = build_settings(agent="command:true", suites=[str(suite)], hints="1", seeds=1, min_fsr=None,
                              calibrate=False, calibration_runs=1, results_dir=results, cache_dir=cache,
                              timeout_s=None, agent_timeout_s=30, threads=1, python=None, data_dir=None,
                              agent_network=agent_network)
    sandbox = sandbox.configured(session_answer_holders(settings), settings.agent_network, kept=(root,))
    dataset = Dataset(root=data, train_glob=str(data / "val_*.bin"), val_glob=str(data / "val_*.bin"), val_tokens=64)
    secrets = {"target record": task.target.script.path, "hint of a level not given": task.hints[3],
               "record cache": record_cache, "calibration copy": calibration, "another item's result": other_item}
    return Layout(task, sandbox, dataset, workspace, script, secrets)


PROBE = '''\
import glob, os, sys
for name, path in {secrets!r}.items():
    try:
        open(path).read()
        print("READ", name)
    except OSError as exc:
        print("HIDDEN", name, type(exc).__name__)
open("written.txt", "w").write("ok")
print("WORKSPACE", open("written.txt").read())
print("DATA", len(open(glob.glob(os.environ["NANOGPT_VAL_FILES"])[0], "rb").read()))
{extra}
'''


def _run_in_harness(layout: Layout, extra: str = "") -> str:
    secrets = {name: str(path) for name, path in layout.secrets.items()}
    layout.script.write_text(PROBE.format(secrets=secrets, extra=extra))
    settings = RunSettings(dataset=layout.dataset, threads=1, sandbox=layout.sandbox)
    log = layout.workspace.parent / "run.log"
    execute_script(layout.script, layout.task, settings, 0, log)
    return log.read_text()


def test_without_masks_the_holders_are_readable(host_dir: Path) -> None:
    """The control: the same probe, unsandboxed, reads every secret (so HIDDEN below is the sandbox's doing)."""
    out = _run_in_harness(_layout(host_dir, Sandbox("none", True)))
    assert out.count("READ ") == 5 and "HIDDEN" not in out


def test_a_run_cannot_read_the_answer_but_keeps_its_workspace_data_and_torch(host_dir: Path, bwrap: Sandbox) -> None:
    layout = _layout(host_dir, bwrap)
    out = _run_in_harness(layout, extra="import torch\nprint('TORCH', torch.__version__)")
    for name in layout.secrets:
        assert f"HIDDEN {name}" in out, out
    assert "READ" not in out
    assert "WORKSPACE ok" in out and "DATA 64" in out and "TORCH" in out, out


def test_a_run_cannot_reach_the_harness_files_through_proc(host_dir: Path, bwrap: Sandbox) -> None:
    """Its own process namespace: /proc/<pytest's pid>/root would otherwise be the host's unmasked file system."""
    layout = _layout(host_dir, bwrap)
    target = f"/proc/{os.getpid()}/root{layout.task.target.script.path}"
    out = _run_in_harness(layout, extra=f"print('PROC', os.path.exists({target!r}))")
    assert "PROC False" in out


def _record_digests() -> set[str]:
    """The sha256 of every record script the packaged suites name (those present on this machine)."""
    digests = set()
    for name in available_suites():
        for task in load_suite(find_suite(name)):
            for ref in (task.start.script, task.target.script):
                if ref.path is not None and ref.path.is_file():
                    digests.add(hashlib.sha256(ref.path.read_bytes()).hexdigest())
    return digests


def test_find_finds_no_record_of_ours_in_the_sandbox(host_dir: Path, bwrap: Sandbox) -> None:
    """`find / -name 'record_*.py'`, the search an agent would try first, turns up none of our records: neither
    the source tree's suites nor the installed package's copy. Files of other software may share the name."""
    layout = _layout(host_dir, bwrap)
    cmd = FIND
    outside = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout.split()
    digests = _record_digests()
    assert any(hashlib.sha256(Path(p).read_bytes()).hexdigest() in digests for p in outside if Path(p).is_file()), \
        "the control failed: find outside the sandbox should see the packaged records"
    proc = subprocess.run([*layout.sandbox.prefix(layout.workspace, masked=task_answer_holders(layout.task)), *cmd],
                          capture_output=True, text=True, timeout=300)
    found = [Path(p) for p in proc.stdout.split()]
    ours = [p for p in found if p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() in digests]
    holders = [*suite_dirs(), *installed_copies(), *layout.sandbox.masked]
    assert not ours and not [p for p in found if any(h == p or h in p.parents for h in holders)], found


def test_a_copy_the_harness_does_not_know_of_is_out_of_sight(host_dir: Path, bwrap: Sandbox) -> None:
    """A record copied somewhere the harness has never heard of (another checkout, a download folder) is not
    masked by name: the sandbox shows the file system by allow-list, so it is not there at all."""
    layout = _layout(host_dir, bwrap)
    elsewhere = Path(tempfile.mkdtemp(prefix="speedrun-elsewhere-", dir="/var/tmp"))
    try:
        copy = elsewhere / "checkout" / "tasks" / "tiny" / "records" / "record_5.py"
        copy.parent.mkdir(parents=True)
        copy.write_text(layout.task.target.script.path.read_text())
        cmd = ["sh", "-c", f"cat {copy} || echo GONE"]
        assert subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout != "GONE\n", "control"
        proc = subprocess.run([*layout.sandbox.prefix(layout.workspace), *cmd], capture_output=True, text=True,
                              timeout=60)
        assert proc.stdout == "GONE\n", proc.stdout[:200]
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_only_the_system_directories_are_shown_by_default(tmp_path: Path) -> None:
    for name in ("usr", "etc", "home", "work", "srv"):
        (tmp_path / name).mkdir()
    (tmp_path / "lib").symlink_to("usr")  # a merged-/usr link is the system's
    (tmp_path / "data").symlink_to("work")  # a link to a private directory is private too
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in private_roots(tmp_path)] == ["data", "home", "srv", "work"]


def test_git_history_of_the_checkout_is_hidden(host_dir: Path, bwrap: Sandbox) -> None:
    """A checkout's objects hold every record: `git show` is the second thing an agent would try."""
    if not git_dirs(REPO / "tasks") or shutil.which("git") is None:
        pytest.skip("not a git checkout (or git is missing): no history to hide")
    layout = _layout(host_dir, bwrap)
    cmd = ["git", "-C", str(REPO), "show", "HEAD:tasks/tiny/records/record_2.py"]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0, "control: git show works outside"
    proc = subprocess.run([*layout.sandbox.prefix(layout.workspace, masked=task_answer_holders(layout.task)), *cmd],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "import torch" not in proc.stdout


# --- command: agents --------------------------------------------------------------------------------------


def _ctx(layout: Layout) -> AgentContext:
    art = layout.workspace.parent
    return AgentContext(task=layout.task, workspace=layout.workspace, script_path=layout.script,
                        hints=(layout.workspace / "hints.md").read_text(), hint_levels=(1,), seed=0,
                        artifacts_dir=art, timeout_s=60, sandbox=layout.sandbox)


def _connect_agent(layout: Layout, port: int, **kw) -> CommandAgent:
    (layout.workspace / "connect.py").write_text(CONNECT.format(port=port))
    return CommandAgent(f"{sys.executable} connect.py", **kw)


def test_a_command_agent_cannot_read_the_answer_and_edits_its_workspace(host_dir: Path, bwrap: Sandbox) -> None:
    layout = _layout(host_dir, bwrap)
    reads = " ; ".join(f"cat {p} >/dev/null 2>&1 && echo {shlex.quote('READ ' + n)}" for n, p in layout.secrets.items())
    solution = CommandAgent(f'{reads} ; echo "# edited" >> "$SPEEDRUN_SCRIPT"').solve(_ctx(layout))
    assert "READ" not in solution.transcript
    assert solution.script.endswith("# edited\n")


def test_a_command_agent_without_network_cannot_reach_a_loopback_server(host_dir: Path, bwrap: Sandbox,
                                                                          listener: int) -> None:
    layout = _layout(host_dir, bwrap)
    transcript = _connect_agent(layout, listener).solve(_ctx(layout)).transcript
    assert "BLOCKED" in transcript, transcript


@pytest.mark.parametrize("how", ["agent needs it", "session allows it"])
def test_a_command_agent_with_network_reaches_it_and_still_cannot_read_the_answer(
        host_dir: Path, bwrap: Sandbox, listener: int, how: str) -> None:
    layout = _layout(host_dir, bwrap, agent_network=how == "session allows it")
    agent = _connect_agent(layout, listener, needs_network=True if how == "agent needs it" else None)
    target = layout.task.target.script.path
    agent.command += f" ; cat {target} >/dev/null 2>&1 && echo READ ; true"
    transcript = agent.solve(_ctx(layout)).transcript
    assert "CONNECTED" in transcript and "READ" not in transcript, transcript


def test_a_command_agent_writes_only_its_workspace_and_its_declared_state(host_dir: Path, bwrap: Sandbox) -> None:
    layout = _layout(host_dir, bwrap)
    state, other = host_dir / "agent-state", host_dir / "elsewhere"
    state.mkdir()
    other.mkdir()
    agent = CommandAgent(f"echo s > {state}/session.json && (echo x > {other}/x 2>/dev/null || echo DENIED)",
                         writable=[state])
    assert "DENIED" in agent.solve(_ctx(layout)).transcript
    assert (state / "session.json").read_text() == "s\n" and not (other / "x").exists()


def test_an_agent_that_fails_in_the_sandbox_is_an_agent_error(host_dir: Path, bwrap: Sandbox) -> None:
    layout = _layout(host_dir, bwrap)
    with pytest.raises(AgentError, match="exited with code 1"):
        CommandAgent(f"cat {layout.task.target.script.path}").solve(_ctx(layout))


# --- what is masked, and in which order (no bwrap needed) -------------------------------------------------

def _mounts(args: list[str]) -> list[tuple[str, str]]:
    """(option, path) for the --tmpfs/--bind/--ro-bind mounts after the fixed ones, in order."""
    out, i = [], args.index("/proc") + 1
    while args[i] != "--chdir":
        if args[i] == "--tmpfs":
            out.append(("--tmpfs", args[i + 1]))
            i += 2
        else:
            out.append((args[i], args[i + 2]))
            i += 3
    return out


def test_the_most_specific_path_decides(host_dir: Path) -> None:
    """Mounts go parents first: an environment kept inside a masked cache is visible, the suites inside that
    environment are hidden again, and the workspace inside the masked results store is writable."""
    cache, results = host_dir / "cache", host_dir / "results"
    env, data, workspace = cache / "venv", cache / "data", results / "s" / "item" / "workspace"
    suites = env / "site-packages" / "pytest_speedrun" / "suites"
    for d in (suites, data, workspace):
        d.mkdir(parents=True)
    args = Sandbox("bwrap", True, masked=(cache, results, suites), kept=(host_dir,)).prefix(
        workspace, read_only=(env, data))
    mounts = _mounts(args)
    assert ("--tmpfs", "/tmp") in mounts and ("--tmpfs", "/var/tmp") in mounts
    ours = [m for m in mounts if host_dir == Path(m[1]) or host_dir in Path(m[1]).parents]
    assert ours == [("--ro-bind", str(host_dir)), ("--tmpfs", str(cache)), ("--tmpfs", str(results)),
                    ("--ro-bind", str(data)), ("--ro-bind", str(env)), ("--bind", str(workspace)),
                    ("--tmpfs", str(suites))]
    assert "--unshare-net" in args and "--unshare-pid" in args


def test_nothing_is_mounted_inside_a_masked_directory_or_the_workspace(host_dir: Path) -> None:
    """A masked file inside a masked directory would otherwise show up as an empty file of the same name; and
    what the harness put in the workspace stays there."""
    suite = write_suite(host_dir / "suites")
    task = load_task(suite / "mini01.toml")
    workspace = host_dir / "ws"
    workspace.mkdir()
    own = workspace / "record_2.py"
    own.write_text("# the agent's own file\n")
    mounts = _mounts(Sandbox("bwrap", True, kept=(host_dir,)).prefix(workspace,
                                                                    masked=(*task_answer_holders(task), own)))
    assert [p for opt, p in mounts if opt == "--tmpfs" and host_dir in Path(p).parents] == [str(suite)]
    assert [p for _, p in mounts if suite in Path(p).parents or Path(p) == own] == []


def test_network_and_masks_follow_the_sandbox_kind(tmp_path: Path) -> None:
    assert Sandbox("none", True).prefix(tmp_path, masked=(tmp_path,)) == []
    assert Sandbox("netns", True).prefix(tmp_path, network=True) == []
    assert Sandbox("netns", True).prefix(tmp_path)[:2] == ["unshare", "--net"]
    assert "--unshare-net" not in Sandbox("bwrap", True).prefix(tmp_path, network=True)


def test_the_session_holders_are_the_directories_the_harness_knows(tmp_path: Path) -> None:
    settings = build_settings(agent=None, suites=["tiny"], hints="0", seeds=1, min_fsr=None, calibrate=False,
                              calibration_runs=1, results_dir=tmp_path / "results", cache_dir=tmp_path / "cache",
                              timeout_s=None, agent_timeout_s=1, threads=None, python=None, data_dir=None,
                              hints_dir=tmp_path)
    holders = session_answer_holders(settings)
    for path in (tmp_path / "cache", tmp_path / "results", tmp_path, find_suite("tiny"), *suite_dirs(),
                 *installed_copies()):
        assert path.resolve() in holders
    if git_dirs(REPO / "tasks"):
        assert git_dirs(REPO / "tasks")[0].resolve() in holders


def test_summary_line_says_when_answers_were_reachable() -> None:
    assert "readable" in Sandbox("none", True).exposure(False)
    assert "readable" in Sandbox("netns", True).exposure(False)
    assert "readable" in Sandbox("bwrap", False, "bwrap not found").exposure(False)
    assert "downloadable" in Sandbox("bwrap", True).exposure(True)
    assert Sandbox("bwrap", True).exposure(False) is None


# --- end to end: the plugin, a command: agent, a run ------------------------------------------------------

def _runtime_read_attack(suite: Path, into: Path) -> Path:
    """The start script with one line in front that runs the target record, its path computed at run time (the
    workspace scan sees neither the path nor a copy) and the env contract left intact."""
    target = str((suite / "records" / "record_2.py").resolve())
    enc = base64.b64encode(target.encode()).decode()
    attack = into / "attack.py"
    attack.write_text(f"import base64; exec(open(base64.b64decode({enc!r})).read()); raise SystemExit(0)\n"
                      + (suite / "records" / "record_1.py").read_text())
    return attack


def _run_plugin(pytester: pytest.Pytester, suite: Path, cache_dir: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--speedrun-suite={suite}", f"--speedrun-cache-dir={cache_dir}", "-p",
                              "no:cacheprovider", "-k", "mini01", *args)


def test_without_a_sandbox_a_runtime_read_of_the_answer_passes_and_the_summary_says_so(
        pytester: pytest.Pytester, host_dir: Path, cache_dir: Path) -> None:
    """The control for the next test: unsandboxed, the attack recovers the human speedup unnoticed."""
    suite = write_suite(host_dir / "suites")
    attack = _runtime_read_attack(suite, host_dir)
    result = _run_plugin(pytester, suite, cache_dir, f"--speedrun-agent=command:cp {attack} \"$SPEEDRUN_SCRIPT\"")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["answers were readable: without --speedrun-sandbox=bwrap the agent and its runs*"])


def test_under_bwrap_the_runtime_read_fails_and_the_summary_has_no_warning(
        pytester: pytest.Pytester, host_dir: Path, cache_dir: Path, bwrap: Sandbox) -> None:
    suite = write_suite(host_dir / "suites")
    attack = _runtime_read_attack(suite, host_dir)
    result = _run_plugin(pytester, suite, cache_dir, "--speedrun-sandbox=bwrap",
                         f"--speedrun-agent=command:cp {attack} \"$SPEEDRUN_SCRIPT\"")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*status crashed*", "*FileNotFoundError*record_2.py*"])
    assert "answers were" not in result.stdout.str()


def test_under_bwrap_an_honest_agent_passes_and_network_for_agents_is_reported(
        pytester: pytest.Pytester, host_dir: Path, cache_dir: Path, bwrap: Sandbox) -> None:
    suite = write_suite(host_dir / "suites")
    result = _run_plugin(pytester, suite, cache_dir, "--speedrun-sandbox=bwrap", "--speedrun-agent-network",
                         "--speedrun-agent=command:echo '# looked' >> \"$SPEEDRUN_SCRIPT\"")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["answers were downloadable: the agent's processes had the network*"])


def test_trusted_agents_get_no_exposure_line(pytester: pytest.Pytester, host_dir: Path, cache_dir: Path) -> None:
    result = _run_plugin(pytester, write_suite(host_dir / "suites"), cache_dir, "--speedrun-agent=oracle")
    result.assert_outcomes(passed=1)
    assert "answers were" not in result.stdout.str()


WHEEL_PROBE = '''\
import json, subprocess, sys
from pathlib import Path
import pytest_speedrun
from pytest_speedrun.execution.answers import session_answer_holders
from pytest_speedrun.execution.sandbox import probe
from pytest_speedrun.settings import build_settings
root = Path(sys.argv[1])
settings = build_settings(agent=None, suites=["tiny"], hints="0", seeds=1, min_fsr=None, calibrate=False,
                          calibration_runs=1, results_dir=root / "results", cache_dir=root / "cache", timeout_s=None,
                          agent_timeout_s=1, threads=None, python=None, data_dir=None)
(root / "ws").mkdir()
prefix = probe("bwrap").configured(session_answer_holders(settings)).prefix(root / "ws")
found = subprocess.run([*prefix, *json.loads(sys.argv[2])], capture_output=True, text=True).stdout.split()
wheel = subprocess.run([*prefix, "cat", sys.argv[3]], capture_output=True).stdout  # what it was installed from
print(json.dumps({"module": pytest_speedrun.__file__, "found": found, "wheel_bytes": len(wheel)}))
'''


@pytest.mark.slow
def test_an_installed_wheel_hides_its_packaged_suites(host_dir: Path, bwrap: Sandbox) -> None:
    """The wheel ships the suites inside the package (pytest_speedrun/suites): from a wheel install, the
    records found under the site directory outside the sandbox are gone inside it."""
    dist, site = host_dir / "dist", host_dir / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(dist), str(REPO)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        pytest.skip(f"cannot build the wheel here: {build.stderr.strip().splitlines()[-1:]}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    *map(str, dist.glob("*.whl"))], check=True, capture_output=True, timeout=600)
    packaged = site / "pytest_speedrun" / "suites" / "tiny" / "records"
    assert (packaged / "record_2.py").is_file()
    elsewhere = host_dir / "elsewhere"
    elsewhere.mkdir()
    (wheel,) = dist.glob("*.whl")
    proc = subprocess.run([sys.executable, "-c", WHEEL_PROBE, str(elsewhere), json.dumps(FIND), str(wheel)],
                          cwd=elsewhere, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["module"].startswith(str(site))
    digests = _record_digests()
    ours = [p for p in report["found"]
            if Path(p).is_file() and hashlib.sha256(Path(p).read_bytes()).hexdigest() in digests]
    assert not ours, ours
    assert report["wheel_bytes"] == 0 < wheel.stat().st_size


def test_where_a_copy_was_installed_from_is_read_from_its_direct_url() -> None:
    from pytest_speedrun.execution.answers import _installed_from
    assert _installed_from('{"dir_info": {"editable": true}, "url": "file:///src/my%20clone"}') == \
        [Path("/src/my clone/tasks")]
    assert _installed_from('{"archive_info": {}, "url": "file:///dist/p.whl"}') == [Path("/dist/p.whl")]
    assert _installed_from('{"archive_info": {}, "url": "https://example.org/p.whl"}') == []
    assert _installed_from(None) == [] and _installed_from("not json") == []


def _stray_base_python(root: Path, record: str) -> tuple[Path, Path, Path]:
    """A base Python prefix (as a venv's `home` is) whose own site-packages holds a copy of this distribution
    that the venv never imports: the packaged suites, and a dist-info saying it came from a source checkout.
    Returns (prefix, its suites folder, the checkout's suites)."""
    prefix = root / "pyenv" / "versions" / "3.11.7"
    site = prefix / "lib" / "python3.11" / "site-packages"
    copy = site / "pytest_speedrun" / "suites" / "tiny" / "records" / "record_2.py"
    copy.parent.mkdir(parents=True)
    copy.write_text(record)
    info = site / "pytest_speedrun-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pytest-speedrun\nVersion: 0.1.0\n")
    (info / "RECORD").write_text("pytest_speedrun/suites/tiny/records/record_2.py,,\n")
    checkout = root / "checkout"
    (info / "direct_url.json").write_text(json.dumps({"url": checkout.as_uri(), "dir_info": {}}))
    return prefix, site / "pytest_speedrun" / "suites", checkout / "tasks"


def test_a_copy_in_a_base_pythons_site_packages_is_an_installed_copy(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A venv's base Python is shown for its standard library, site-packages and all: a copy installed there
    (found by CI on a machine where the base Python had an old build) counts though no sys.path entry leads to
    it, and so does the source tree its dist-info says it came from."""
    from pytest_speedrun.execution import answers
    prefix, suites, checkout = _stray_base_python(tmp_path, "print('record')\n")
    assert suites not in installed_copies()
    monkeypatch.setattr(answers, "python_prefixes", lambda: [prefix])
    found = installed_copies()
    assert suites in found and checkout in found
    assert prefix / "lib" / "python3.11" / "site-packages" in answers.library_dirs([prefix])


def test_a_copy_in_a_shown_base_python_is_masked(host_dir: Path, bwrap: Sandbox,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox keeps the base prefix visible (the stdlib lives there); the copy in its site-packages is not."""
    from pytest_speedrun.execution import answers
    record = (find_suite("tiny") / "records" / "record_2.py").read_text()
    prefix, suites, _ = _stray_base_python(host_dir, record)
    copy = suites / "tiny" / "records" / "record_2.py"
    workspace = host_dir / "ws"
    workspace.mkdir()
    cmd = ["sh", "-c", f"cat {copy} || echo GONE"]
    shown = bwrap.configured(kept=[prefix])
    assert subprocess.run([*shown.prefix(workspace), *cmd], capture_output=True, text=True,
                          timeout=60).stdout == record, "control: the kept prefix is visible"
    monkeypatch.setattr(answers, "python_prefixes", lambda: [prefix])
    proc = subprocess.run([*bwrap.configured(masked=installed_copies(), kept=[prefix]).prefix(workspace), *cmd],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout == "GONE\n", proc.stdout[:200]
