"""Small realistic inputs for tests: fake record scripts (pure Python, no torch) and a mini task suite.

A fake record reads the env contract, checks the shard header like a real record, sleeps `work_s` spread over
its steps (so its train_time is real elapsed time) and prints log lines in the records-4-21 format.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

FAKE_RECORD = '''\
import glob, os, struct, sys, time
WORK_S = {work_s}
FINAL_LOSS = {loss}
N = {steps}
train = sorted(glob.glob(os.environ["NANOGPT_TRAIN_FILES"]))
val = sorted(glob.glob(os.environ["NANOGPT_VAL_FILES"]))
assert train and val, "no shards"
magic, version, ntok = struct.unpack("<3i", open(val[0], "rb").read(12))
assert magic == 20240520 and version == 1
assert int(os.environ["NANOGPT_VAL_TOKENS"]) > 0
print("seed", os.environ.get("SPEEDRUN_SEED"), "threads", os.environ.get("OMP_NUM_THREADS"), flush=True)
busy_until = time.process_time() + {pre_cpu_s}  # CPU work before the first step line (imports, data)
while time.process_time() < busy_until:
    pass
train_ms = 0.0
for step in range(N + 1):
    if step == 0 or step == N:
        loss = 5.0 if step == 0 else FINAL_LOSS
        avg = train_ms / max(step, 1)
        print(f"step:{{step}}/{{N}} val_loss:{{loss:.4f}} train_time:{{train_ms:.0f}}ms step_avg:{{avg:.2f}}ms",
              flush=True)
    if step == N:
        break
    t0 = time.perf_counter()
    time.sleep(WORK_S / N)
    train_ms += 1000 * (time.perf_counter() - t0)
    avg = train_ms / (step + 1)
    print(f"step:{{step + 1}}/{{N}} train_loss:3.0 train_time:{{train_ms:.0f}}ms step_avg:{{avg:.2f}}ms", flush=True)
'''


def fake_record(work_s: float, loss: float = 1.95, steps: int = 10, pre_cpu_s: float = 0.0) -> str:
    """A fake record that sleeps `work_s` over its steps, after `pre_cpu_s` of CPU work before its first step."""
    return FAKE_RECORD.format(work_s=work_s, loss=loss, steps=steps, pre_cpu_s=pre_cpu_s)


def manifest(task_id: str, start: str, target: str, *, t_start: float = 1000, t_target: float = 500,
             target_loss: float = 2.0, reference: str = "calibrate", extra: str = "", hints: bool = True,
             records: tuple[int, int] = (1, 2)) -> str:
    text = f'''\
        id = "{task_id}"
        suite = "mini"
        title = "fake task {task_id}"
        target_val_loss = {target_loss}
        {extra}
        [start]
        record = {records[0]}
        script = {{ path = "{start}" }}
        train_time_ms = {t_start}

        [target]
        record = {records[1]}
        script = {{ path = "{target}" }}
        train_time_ms = {t_target}

        [launch]
        nproc_per_node = 1
        timeout_s = 60
        env = {{ NANOGPT_VAL_TOKENS = "4096" }}

        [data]
        dataset = "tiny"

        [reference]
        source = "{reference}"
        '''
    if hints:
        text += '''
        [hints]
        1 = "hints/pseudo.md"
        2 = "hints/desc.md"
        3 = "hints/paper.md"
        '''
    return textwrap.dedent(text)


def write_suite(root: Path, works: tuple[float, ...] = (0.6, 0.3, 0.15), loss: float = 1.95,
                pre_cpu_s: float = 0.0) -> Path:
    """A suite 'mini' of len(works)-1 tasks mini01.. whose record k sleeps works[k-1] seconds (after `pre_cpu_s`
    of CPU work before its first step line)."""
    suite = root / "mini"
    (suite / "records").mkdir(parents=True, exist_ok=True)
    (suite / "hints").mkdir(exist_ok=True)
    for name, body in (("pseudo", "x = faster(x)"), ("desc", "Make it faster."), ("paper", "# Faster\nWe go fast.")):
        (suite / "hints" / f"{name}.md").write_text(body + "\n")
    for k, work in enumerate(works, start=1):
        (suite / "records" / f"record_{k}.py").write_text(fake_record(work, loss, pre_cpu_s=pre_cpu_s))
    for k in range(1, len(works)):
        (suite / f"mini{k:02d}.toml").write_text(
            manifest(f"mini{k:02d}", f"records/record_{k}.py", f"records/record_{k + 1}.py", records=(k, k + 1)))
    return suite


# A probe for network isolation: prints CONNECTED or BLOCKED for a loopback port (the `listener` fixture).
CONNECT = '''\
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", exc)
'''


def scored_from_times(records: list[dict]) -> list[str]:
    """The mechanics of a time-scored item, never a band the machine's noise can break (issue 20): its FSR is
    the one its recorded times give, (t_i - t') / (t_i - t_(i+1)), and its interval holds it. Statistical
    quality is benchmarks/fsr_stability.py's to measure."""
    bad = []
    for r in records:
        fsr = (r["t_start_ms"] - r["train_time_ms"]) / (r["t_start_ms"] - r["t_target_ms"])
        if abs(fsr - r["fsr"]) > 1e-9 or not r["fsr_low"] <= r["fsr"] <= r["fsr_high"]:
            bad.append(f"{r['task']}: FSR {r['fsr']} [{r['fsr_low']}, {r['fsr_high']}] is not {fsr} from its times")
    return bad


def sigint_default() -> None:
    """`preexec_fn` for a pytest started to be interrupted: SIGINT back to its default. A process started in the
    background by a non-interactive shell (`cmd &`, as a CI script or `nohup` may run the test suite) inherits
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler: Ctrl-C would never reach pytest."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def load_benchmark(name: str):
    """A script of benchmarks/ as a module, for tests of its arithmetic (registered while it executes, so its
    dataclasses can find their module)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module
