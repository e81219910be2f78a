"""Behaviour probes for the compat fixes: does a construct that some pinned records use still run in an interpreter?

Run as a file (`python compat_probe.py`) by the interpreter under test, which need not have pytest-speedrun
installed: the standard library and torch only. It prints one JSON object, {probe name: null when the construct
runs there, else the first line of its error}. The controller imports this module without torch and calls
`run_compat_probes`, which runs it as a child process with a timeout and caches the answer per interpreter.

`fp8-fake-strides`: a custom op whose real backward returns a transposed (column-major) FP8 matmul result while
its registered fake returns a row-major tensor, compiled with torch.compile through a backward pass: the
construct of records 19-21. A torch that checks fake against real strides fails it with inductor's
`assert_size_stride` text (`expected size ... stride ...`); tasks/compat.py's fix of that name repairs it. It
runs on CUDA when present, else on the CPU (whose torch._scaled_mm takes float8 in recent torch); a device that
cannot run FP8 matmuls fails it with that error instead, which `PROBE_SIGNATURES` tells apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PROBES: tuple[str, ...] = ("fp8-fake-strides",)
# the text a probe's failure carries when it is the construct's own failure (not, say, a missing FP8 kernel)
PROBE_SIGNATURES: dict[str, str] = {"fp8-fake-strides": "expected size"}
CACHE_FOLDER = "compat_probes"
_VERSION_QUERY = ("import importlib.metadata as m, json, sys\n"
                  "try:\n    v = m.version('torch')\nexcept Exception:\n    v = None\n"
                  "print(json.dumps([sys.prefix, v]))")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def probe_fp8_fake_strides() -> None:
    """Raise what the construct raises in this interpreter; return when it runs."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    e4m3, e5m2 = torch.float8_e4m3fn, torch.float8_e5m2

    # explicit schemas: this module's postponed annotations cannot be read back inside a function
    @torch.library.custom_op("speedrun_compat_probe::qproj", mutates_args=(),
                             schema="(Tensor h, Tensor weight) -> (Tensor, Tensor, Tensor)")
    def qproj(h, weight):
        unit = torch.ones((), dtype=torch.float32, device=h.device)
        h8, w8 = h.to(e4m3), weight.to(e4m3)
        return torch._scaled_mm(h8, w8.t(), out_dtype=torch.bfloat16, scale_a=unit, scale_b=unit), h8, w8

    @qproj.register_fake
    def _qproj_fake(h, weight):
        return h @ weight.t(), h.to(e4m3), weight.to(e4m3)

    @torch.library.custom_op("speedrun_compat_probe::qproj_grad", mutates_args=(),
                             schema="(Tensor dy, Tensor h8, Tensor w8) -> (Tensor, Tensor)")
    def qproj_grad(dy, h8, w8):
        unit = torch.ones((), dtype=torch.float32, device=dy.device)
        dy8 = dy.to(e5m2)
        dh = torch._scaled_mm(dy8, w8.t().contiguous().t(), out_dtype=torch.bfloat16, scale_a=unit, scale_b=unit)
        dw_t = torch._scaled_mm(h8.t().contiguous(), dy8.t().contiguous().t(), out_dtype=torch.bfloat16,
                                scale_a=unit, scale_b=unit)
        return dh, dw_t.t()  # the weight's gradient, column-major

    @qproj_grad.register_fake
    def _qproj_grad_fake(dy, h8, w8):
        # the second is row-major, where the real op's is column-major
        return h8.to(torch.bfloat16), w8.to(torch.bfloat16)

    def backward(ctx, dy, *_):
        return qproj_grad(dy, *ctx.saved_tensors)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output[1], output[2])
        ctx.set_materialize_grads(False)

    qproj.register_autograd(backward, setup_context=setup_context)
    weight = torch.nn.Parameter(torch.randn(48, 32, device=device, dtype=torch.bfloat16))
    h = torch.randn(16, 32, device=device, dtype=torch.bfloat16)

    # nothing but the two ops in the compiled graphs (the gradients are already in the weight's dtype): no kernel
    # to generate, so the CPU build skips its compiler checks and the probe takes seconds
    out = torch.compile(lambda h: qproj(h, weight)[0])(h)
    out.backward(torch.ones_like(out))
    if weight.grad is None or tuple(weight.grad.shape) != (48, 32):
        raise RuntimeError("the compiled backward pass gave the weight no gradient of its shape")


def probe() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, check in (("fp8-fake-strides", probe_fp8_fake_strides),):
        try:
            check()
            out[name] = None
        except Exception as exc:  # every failure is the answer
            out[name] = _first_line(exc)
    return out


# --- the controller's side: no torch below this line --------------------------------------------------------------

def _probe_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _cache_key(python: str, timeout_s: float) -> dict | None:
    """What identifies an interpreter's answer: its real path, mtime, prefix and torch version, and this probe's
    own source. None when the interpreter cannot say (nothing is then cached)."""
    real = os.path.realpath(python)
    try:
        mtime = os.stat(real).st_mtime_ns
        proc = subprocess.run([python, "-c", _VERSION_QUERY], capture_output=True, text=True, env=dict(os.environ),
                              cwd=tempfile.gettempdir(), timeout=min(timeout_s, 60), stdin=subprocess.DEVNULL,
                              start_new_session=True)
        prefix, version = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None
    if version is None:
        return None
    return {"python": real, "mtime_ns": mtime, "prefix": prefix, "torch": version, "probe": _probe_digest()}


def _all(text: str) -> dict[str, str | None]:
    return {name: text for name in PROBES}


def _run_child(python: str, timeout_s: float) -> tuple[dict[str, str | None], bool]:
    """(the answer, whether it came from the probe itself and so may be cached)."""
    with tempfile.TemporaryDirectory(prefix="speedrun-compat-") as work:
        env = {**os.environ, "TRITON_CACHE_DIR": os.path.join(work, "triton")}
        try:
            proc = subprocess.run([python, str(Path(__file__).resolve())], capture_output=True, text=True, env=env,
                                  cwd=work, timeout=timeout_s, stdin=subprocess.DEVNULL, start_new_session=True)
        except subprocess.TimeoutExpired:
            return _all(f"the compat probe did not finish in {timeout_s:.0f} s"), False
        except OSError as exc:
            return _all(f"cannot run {python} ({exc.strerror})"), False
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    try:
        answer = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return _all(f"the compat probe failed in {python}: {tail[:200]}"), False
    return {name: answer.get(name, "the probe gave no answer for it") for name in PROBES}, True


def run_compat_probes(python: str, timeout_s: float = 300, cache_dir: Path | None = None) -> dict[str, str | None]:
    """{probe name: None when the construct runs in `python`, else why not}. The answer is cached under
    `cache_dir` per interpreter (real path, mtime, prefix, torch version), so a session probes each one once."""
    key = _cache_key(python, timeout_s) if cache_dir is not None else None
    path = None
    if key is not None and cache_dir is not None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        path = Path(cache_dir) / CACHE_FOLDER / f"{digest}.json"
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("key") == key and set(stored.get("result", {})) == set(PROBES):
                return dict(stored["result"])
        except (OSError, ValueError, AttributeError):
            pass
    answer, cacheable = _run_child(python, timeout_s)
    if path is not None and cacheable:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(f".{os.getpid()}.part")
        part.write_text(json.dumps({"key": key, "result": answer}, sort_keys=True), encoding="utf-8")
        os.replace(part, path)
    return answer


def main() -> None:
    # a shared inductor cache can serve a graph compiled with another fake's strides: always compile afresh
    cache = tempfile.mkdtemp(prefix="speedrun-compat-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    try:
        print(json.dumps(probe()), flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
