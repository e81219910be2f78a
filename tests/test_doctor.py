"""`pytest-speedrun doctor` on this machine (real probe, no GPU) and under stand-ins: a fake nvidia-smi, a fake
GPU interpreter answering the probe, a real torch without torchrun, generated shards and a generated suite."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import manifest
from pytest_speedrun import cli
from pytest_speedrun.agents import registry
from pytest_speedrun.data.dataset import write_shard
from pytest_speedrun.execution import doctor
from pytest_speedrun.execution.doctor import FAIL, OK, WARN, DoctorOptions, run_checks
from pytest_speedrun.execution.sandbox import probe as sandbox_probe
from pytest_speedrun.tasks.fetch import cached_path
from pytest_speedrun.tasks.manifest import load_suite

COMMIT = "d" * 40
RECORDS = {1: b"# record 1: dense attention\nprint(1)\n" * 30,
           2: b"from torch.nn.attention.flex_attention import flex_attention\n" * 20,
           3: b"import torch\nflex_attention = 1\nout = torch._scaled_mm(a, b)\n" * 20}
GPU_NODE = {"python": "3.12.3", "executable": "/opt/gpu/bin/python", "torch": "2.7.0+cu126", "cuda": "12.6",
            "cuda_available": True, "devices": 1, "device_name": "NVIDIA H100 80GB HBM3", "capability": [9, 0],
            "torchrun": True, "flex": "cuda", "custom_op": True, "fp8": True}


def fake_nvidia_smi(bin_dir: Path, gpus: int, free_gib: float = 79.0, total_gib: float = 80.0) -> Path:
    """Answers `-L` and the --query-gpu CSV the way nvidia-smi does."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    listing = "\n".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d}-fake)" for i in range(gpus))
    query = "\n".join(f"{i}, NVIDIA H100 80GB HBM3, 550.54.15, {free_gib * 1024:.0f}, {total_gib * 1024:.0f}"
                      for i in range(gpus))
    exe = bin_dir / "nvidia-smi"
    exe.write_text(f'#!/bin/sh\ncase "$1" in\n  -L) cat <<\'EOF\'\n{listing}\nEOF\n;;\n'
                   f'  --query-gpu=*) cat <<\'EOF\'\n{query}\nEOF\n;;\n  *) exit 2;;\nesac\n')
    exe.chmod(0o755)
    return bin_dir


def fake_python(path: Path, answer: dict) -> str:
    """An interpreter standing in for a GPU node's: it answers the probe with `answer`."""
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(answer)}\nEOF\n")
    path.chmod(0o755)
    return str(path)


def python_without_torchrun(path: Path) -> str:
    """The real interpreter and torch, with torch.distributed.run made unimportable."""
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -c "import runpy, sys; sys.modules[\'torch.distributed.run\'] '
                    f'= None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name=\'__main__\')" "$@"\n')
    path.chmod(0o755)
    return str(path)


def gpu_suite(root: Path, nproc: int = 1, supported: str = "[1, 8]", shards: int = 2) -> Path:
    """Suite 'mini': g01 = record 1 -> 2 (2 uses FlexAttention), g02 = record 2 -> 3 (3 uses FP8 too)."""
    suite = root / "gpu"
    suite.mkdir(parents=True, exist_ok=True)
    for i, (a, b) in enumerate(((1, 2), (2, 3)), start=1):
        text = manifest(f"g{i:02d}", "x.py", "y.py", reference="manifest", hints=False, records=(a, b))
        for name, k in (("x.py", a), ("y.py", b)):
            url = f"https://raw.githubusercontent.com/o/r/{COMMIT}/record_{k}/train_gpt2.py"
            pin = f'{{ url = "{url}", sha256 = "{hashlib.sha256(RECORDS[k]).hexdigest()}", bytes = {len(RECORDS[k])} }}'
            text = text.replace(f'{{ path = "{name}" }}', pin)
        text = text.replace("nproc_per_node = 1", f"nproc_per_node = {nproc}\nsupported_gpu_counts = {supported}")
        text = text.replace('dataset = "tiny"', f'dataset = "fineweb"\ntrain_shards = {shards}')
        (suite / f"g{i:02d}.toml").write_text(text)
    return suite


def cache_records(cache: Path, suite: Path, which: tuple[int, ...] = (1, 2, 3)) -> None:
    for task in load_suite(suite):
        for end in (task.start, task.target):
            if end.record in which:
                path = cached_path(cache, end.script)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(RECORDS[end.record])


def shards(folder: Path, train: int) -> Path:
    write_shard(folder / "fineweb_val_000000.bin", [1, 2, 3] * 100)
    for i in range(1, train + 1):
        write_shard(folder / f"fineweb_train_{i:06d}.bin", [4, 5, 6] * 100)
    return folder


@pytest.fixture(scope="module")
def real_probe() -> dict:
    """This machine's own answer (CPU torch), measured once for the module."""
    return doctor.run_probe(sys.executable, 180)


@pytest.fixture
def node(tmp_path: Path, monkeypatch):
    """A clean environment: PATH without nvidia-smi (unless a test adds one), no CUDA_VISIBLE_DEVICES."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if not (Path(d) / "nvidia-smi").exists())
    monkeypatch.setenv("PATH", path)
    sandbox_probe.cache_clear()
    return tmp_path


def checks_of(opts: DoctorOptions) -> dict[str, doctor.Check]:
    checks = run_checks(opts)
    assert all(c.fix for c in checks if c.status == FAIL), [c for c in checks if c.status == FAIL and not c.fix]
    return {c.name: c for c in checks}


def gpu_node(node: Path, monkeypatch, gpus: int = 1, **kw) -> DoctorOptions:
    """A one-GPU node stand-in with every input in place; `kw` overrides options."""
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(node / 'bin', gpus)}{os.pathsep}{os.environ['PATH']}")
    suite = kw.pop("suite", None) or gpu_suite(node / "suites")
    cache = node / "cache"
    cache_records(cache, suite)
    opts = dict(suite=str(suite), cache_dir=cache, data_dir=shards(node / "data", 2), start=node,
                python=fake_python(node / "python", GPU_NODE), nproc=1)
    opts.update(kw)
    return DoctorOptions(**opts)


def test_this_cpu_machine_cannot_run_a_gpu_suite_and_says_why(node: Path, monkeypatch, real_probe: dict) -> None:
    monkeypatch.setattr(doctor, "run_probe", lambda python, timeout: real_probe)
    suite = gpu_suite(node / "suites")
    cache_records(node / "cache", suite, which=(1, 3))  # record 3 uses FP8; record 2 is missing
    rows = checks_of(DoctorOptions(suite=str(suite), cache_dir=node / "cache", start=node))
    assert rows["torch"].status == OK and real_probe["torch"] in rows["torch"].detail
    assert rows["CUDA"].status == FAIL and "CPU-only build" in rows["CUDA"].detail
    assert "CUDA build of torch" in rows["CUDA"].fix
    assert rows["GPUs"].status == FAIL and "nvidia-smi not found" in rows["GPUs"].detail
    assert rows["torchrun"].status == OK
    assert rows["FP8 matmul"].status == WARN and "no CUDA device" in rows["FP8 matmul"].detail
    assert rows["records: gpu"].status == FAIL and "fetch records" in rows["records: gpu"].fix
    assert "record 2 (g01 target, g02 start)" in rows["records: gpu"].detail
    assert rows["FineWeb"].status == FAIL and "fetch data --train-shards 2" in rows["FineWeb"].fix


def test_the_tiny_suite_can_run_here_exit_code_0(node: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest_speedrun.cli", "doctor", "--suite", "tiny", "--cache-dir",
                           str(node / "cache")], capture_output=True, text=True, cwd=node, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].split() == ["check", "status", "detail", "fix"]
    assert "suite tiny: can run here (4 task(s) selected)" in proc.stdout
    # other suites' missing scripts block nothing
    assert re.search(r"^records: nanogpt +warn ", proc.stdout, re.M) and re.search(r"^records: ladder +warn ",
                                                                                  proc.stdout, re.M)


def test_a_one_gpu_node_with_everything_in_place_can_run(node: Path, monkeypatch, capsys) -> None:
    opts = gpu_node(node, monkeypatch)
    rows = checks_of(opts)
    assert {name: c.status for name, c in rows.items() if c.status != OK} == {"records: nanogpt": WARN,
                                                                               "records: ladder": WARN}, rows
    assert "1 x NVIDIA H100 80GB HBM3, driver 550.54.15; free memory 79.0/80.0 GiB" in rows["GPUs"].detail
    assert "needed by g01, g02" in rows["FlexAttention"].detail and "needed by g02" in rows["FP8 matmul"].detail
    assert "1 val + 2 train shard(s)" in rows["FineWeb"].detail
    assert cli.main(["doctor", "--suite", opts.suite, "--cache-dir", str(opts.cache_dir), "--data",
                     str(opts.data_dir), "--python", opts.python, "--nproc", "1"]) == 0
    assert "can run here (2 task(s) selected)" in capsys.readouterr().out


def test_eight_gpu_tasks_on_one_gpu_suggest_nproc_1(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch, suite=gpu_suite(node / "suites", nproc=8), nproc=None)
    gpus = checks_of(opts)["GPUs"]
    assert gpus.status == FAIL and "g01, g02 need 8 GPU(s)" in gpus.detail
    assert "--speedrun-nproc=1" in gpus.fix


def test_tasks_that_support_only_8_gpus_are_named(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch, suite=gpu_suite(node / "suites", nproc=8, supported="[8]"))
    gpus = checks_of(opts)["GPUs"]
    assert gpus.status == FAIL and "g01, g02 do not support 1 GPU(s)" in gpus.detail


def test_a_gpu_held_by_another_process_is_a_warning(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch)
    fake_nvidia_smi(node / "bin", 1, free_gib=20.0)
    gpus = checks_of(opts)["GPUs"]
    assert gpus.status == WARN and "GPU 0 partly in use" in gpus.detail


def test_no_gpus_at_all_fail_for_gpu_tasks(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch, gpus=0)
    assert checks_of(opts)["GPUs"].status == FAIL


def test_a_missing_torchrun_fails_gpu_tasks_with_its_fix(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch, python=python_without_torchrun(node / "python-no-torchrun"))
    rows = checks_of(opts)
    assert rows["torch"].status == OK  # the real torch, only torchrun is missing
    assert rows["torchrun"].status == FAIL and "import torch.distributed.run failed" in rows["torchrun"].detail
    assert "g01, g02 launch through it" in rows["torchrun"].detail and "torch.distributed.run" in rows["torchrun"].fix


def test_an_interpreter_without_torch_fails_with_the_install_command(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch, python=fake_python(node / "py", {"python": "3.12.1", "executable": "/p",
                                                                         "torch_error": "ModuleNotFoundError: torch"}))
    rows = checks_of(opts)
    assert rows["torch"].status == FAIL and "pip install torch" in rows["torch"].fix
    assert rows["CUDA"].status == WARN and rows["torchrun"].status == WARN


def test_a_hanging_interpreter_is_reported_not_waited_for(node: Path, monkeypatch) -> None:
    hang = node / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    rows = checks_of(gpu_node(node, monkeypatch, python=str(hang), probe_timeout_s=1))
    assert rows["python"].status == FAIL and "did not finish in 1 s" in rows["python"].detail


def test_fp8_on_an_older_gpu_fails_only_the_tasks_that_use_it(node: Path, monkeypatch) -> None:
    a100 = {**GPU_NODE, "device_name": "NVIDIA A100-SXM4-80GB", "capability": [8, 0], "fp8": False,
            "fp8_error": "RuntimeError: torch._scaled_mm is only supported on CUDA devices with compute capability "
                         ">= 9.0 or 8.9"}
    opts = gpu_node(node, monkeypatch, python=fake_python(node / "py", a100))
    fp8 = checks_of(opts)["FP8 matmul"]
    assert fp8.status == FAIL and "compute capability 8.0" in fp8.detail and "g02" in fp8.fix
    rows = checks_of(DoctorOptions(**{**opts.__dict__, "select": "g01", "smoke": True}))
    assert rows["FP8 matmul"].status == WARN and "do not use it" in rows["FP8 matmul"].detail


def test_missing_record_scripts_are_named(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch)
    cached_path(opts.cache_dir, load_suite(Path(opts.suite))[1].target.script).unlink()  # record 3
    rows = checks_of(opts)
    records = rows["records: gpu"]
    assert records.status == FAIL and "2 of 3" in records.detail and "record 3 (g02 target)" in records.detail
    assert "--from DIR" in records.fix
    assert checks_of(DoctorOptions(**{**opts.__dict__, "smoke": True}))["records: gpu"].status == OK


def test_fineweb_shards_are_counted_and_bad_headers_named(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch, suite=gpu_suite(node / "suites", shards=3))
    fineweb = checks_of(opts)["FineWeb"]
    assert fineweb.status == FAIL and "g01, g02 need up to 3 train shards" in fineweb.detail
    bad = opts.data_dir / "fineweb_train_000003.bin"
    bad.write_bytes((opts.data_dir / "fineweb_train_000001.bin").read_bytes()[:1500])  # cut short
    fineweb = checks_of(opts)["FineWeb"]
    assert fineweb.status == FAIL and "1 with a bad header" in fineweb.detail and str(bad) in fineweb.detail
    bad.write_bytes((opts.data_dir / "fineweb_train_000001.bin").read_bytes())
    assert checks_of(opts)["FineWeb"].status == OK


def test_smoke_mode_needs_no_fineweb(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch, data_dir=node / "no-such-data", smoke=True)
    fineweb = checks_of(opts)["FineWeb"]
    assert fineweb.status == OK and "smoke mode generates its shards" in fineweb.detail


def test_api_keys_are_shown_present_or_absent_never_printed(node: Path, monkeypatch, capsys) -> None:
    opts = gpu_node(node, monkeypatch, agent="claude")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    keys = checks_of(opts)["agent"]
    assert keys.status == FAIL and "ANTHROPIC_API_KEY absent" in keys.detail and "export ANTHROPIC_API_KEY" in keys.fix
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-very-secret-value")
    assert "ANTHROPIC_API_KEY present (values never shown)" in checks_of(opts)["agent"].detail
    assert cli.main(["doctor", "--suite", opts.suite, "--cache-dir", str(opts.cache_dir), "--data",
                     str(opts.data_dir), "--python", opts.python, "--nproc", "1", "--agent", "claude"]) == 0
    out = capsys.readouterr().out
    assert "ANTHROPIC_API_KEY" in out and "sk-ant" not in out and "very-secret" not in out


def test_the_agent_comes_from_the_ini_file(node: Path, monkeypatch) -> None:
    (node / "pytest.ini").write_text("[pytest]\nspeedrun_agent = deepseek\n")
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    keys = checks_of(gpu_node(node, monkeypatch))["agent"]
    assert keys.status == FAIL and "DEEPSEEK_API_KEY absent" in keys.detail


def test_offline_agents_need_no_key_and_unknown_ones_are_an_error(node: Path, monkeypatch) -> None:
    assert checks_of(gpu_node(node, monkeypatch, agent="command:./a.sh"))["agent"].status == OK
    unknown = checks_of(gpu_node(node, monkeypatch, agent="nonesuch"))["agent"]
    assert unknown.status == FAIL and "unknown agent 'nonesuch'" in unknown.detail


def test_agents_declare_their_credentials_and_tool(node: Path, monkeypatch) -> None:
    signed_in = node / "home" / ".tool" / "auth.json"

    class Tool:
        name = "tool"
        executable = "the-tool"
        install = "npm install -g the-tool"

        def credentials(self) -> list[tuple[str, bool]]:
            return [("TOOL_API_KEY", bool(os.environ.get("TOOL_API_KEY"))), (str(signed_in), signed_in.is_file())]

        def solve(self, ctx):  # pragma: no cover - never run here
            raise NotImplementedError

    monkeypatch.setitem(registry.BUILTINS, "tool", lambda arg: Tool())
    monkeypatch.delenv("TOOL_API_KEY", raising=False)
    opts = gpu_node(node, monkeypatch, agent="tool")
    keys = checks_of(opts)["agent"]
    assert keys.status == FAIL and "`the-tool` is not on PATH" in keys.detail and keys.fix == Tool.install
    (node / "bin" / "the-tool").write_text("#!/bin/sh\n")
    (node / "bin" / "the-tool").chmod(0o755)
    keys = checks_of(opts)["agent"]
    assert keys.status == FAIL and "TOOL_API_KEY absent" in keys.detail and "sign in with the tool" in keys.fix
    signed_in.parent.mkdir(parents=True)
    signed_in.write_text("{}")  # signed in by OAuth instead of a key
    keys = checks_of(opts)["agent"]
    assert keys.status == OK and f"{signed_in} present" in keys.detail


def test_slurm_is_checked_when_configured(node: Path, monkeypatch) -> None:
    (node / "pytest.ini").write_text("[pytest]\nspeedrun_launcher = slurm\nspeedrun_slurm_partition = gpu\n")
    opts = gpu_node(node, monkeypatch)
    for tool in ("sbatch", "squeue", "scancel"):
        (node / "bin" / tool).write_text("#!/bin/sh\nexit 0\n")
        (node / "bin" / tool).chmod(0o755)
    slurm = checks_of(opts)["Slurm"]
    # no sinfo of ours: where Slurm is installed (CI installs it for tests/test_slurm.py) the real one answers
    # that no slurmctld is reachable, elsewhere there is none
    assert slurm.status == FAIL and ("sinfo not on PATH" in slurm.detail or "slurmctld does not answer" in slurm.detail)
    (node / "bin" / "sinfo").write_text("#!/bin/sh\necho 'debug*'\necho cpu\n")
    (node / "bin" / "sinfo").chmod(0o755)
    slurm = checks_of(opts)["Slurm"]
    assert slurm.status == FAIL and "partition 'gpu' (ini speedrun_slurm_partition) does not exist" in slurm.detail
    (node / "bin" / "sinfo").write_text("#!/bin/sh\necho 'debug*'\necho gpu\n")
    assert checks_of(opts)["Slurm"].status == OK
    assert checks_of(DoctorOptions(**{**opts.__dict__, "launcher": "local"}))["Slurm"].detail.startswith("not config")


def test_an_unavailable_sandbox_is_a_warning_naming_the_install(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch, sandbox="bwrap")
    monkeypatch.setenv("PATH", f"{node / 'bin'}")  # no bwrap, no unshare
    sandbox_probe.cache_clear()
    box = checks_of(opts)["sandbox"]
    assert box.status == WARN and "bwrap: unavailable (bwrap not found)" in box.detail
    assert "apt-get install bubblewrap" in box.fix


def test_little_free_disk_fails(node: Path, monkeypatch) -> None:
    opts = gpu_node(node, monkeypatch)
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: type("U", (), {"free": 1 << 29})())
    disk = checks_of(opts)["disk"]
    assert disk.status == FAIL and "0.5 GiB free" in disk.detail


def test_pyproject_ini_options_are_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nspeedrun_agent = "oracle"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert doctor.find_ini(sub) == (tmp_path / "pyproject.toml", {"speedrun_agent": "oracle"})


def test_an_unknown_task_selection_is_one_line(capsys) -> None:
    assert cli.main(["doctor", "--suite", "tiny", "-k", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "-k nosuch: no task of suite tiny matches" in err
