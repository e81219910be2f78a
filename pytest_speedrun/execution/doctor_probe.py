"""What `pytest-speedrun doctor` asks the run's interpreter: torch, CUDA, torchrun, FlexAttention, FP8 matmul.

Run as a file (`python doctor_probe.py`) by the interpreter training runs use, which need not have
pytest-speedrun installed: the standard library and torch only. It prints one JSON object. The controller
never imports torch itself; this is a child process with a timeout.
"""

from __future__ import annotations

import json
import platform
import sys


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]


def probe() -> dict:
    out: dict = {"python": platform.python_version(), "executable": sys.executable}
    try:
        import torch
    except Exception as exc:  # any import failure (missing, broken CUDA libraries) is the answer
        out["torch_error"] = _error(exc)
        return out
    out["torch"] = torch.__version__
    out["cuda"] = torch.version.cuda
    cuda = torch.cuda.is_available()
    out["cuda_available"] = cuda
    if cuda:
        out["devices"] = torch.cuda.device_count()
        out["device_name"] = torch.cuda.get_device_name(0)
        out["capability"] = list(torch.cuda.get_device_capability(0))
    try:
        import torch.distributed.run  # noqa: F401  (what `torchrun` runs)
        out["torchrun"] = True
    except Exception as exc:
        out["torchrun_error"] = _error(exc)
    device = "cuda" if cuda else "cpu"
    try:
        import warnings

        from torch.nn.attention.flex_attention import flex_attention

        q = torch.randn(1, 2, 128, 16, device=device)
        with warnings.catch_warnings():  # eager flex_attention warns that it is unfused; that is expected here
            warnings.simplefilter("ignore")
            flex_attention(q, q, q)
        out["flex"] = device
    except Exception as exc:
        out["flex_error"] = _error(exc)
    out["custom_op"] = hasattr(torch, "library") and hasattr(torch.library, "custom_op")
    try:
        if not cuda:
            raise RuntimeError("no CUDA device to run torch._scaled_mm on")
        a = torch.randn(32, 32, device="cuda").to(torch.float8_e4m3fn)
        b = torch.randn(32, 32, device="cuda").to(torch.float8_e4m3fn)
        one = torch.tensor(1.0, device="cuda")
        torch._scaled_mm(a, b.T, out_dtype=torch.bfloat16, scale_a=one, scale_b=one, use_fast_accum=True)
        torch.cuda.synchronize()
        out["fp8"] = True
    except Exception as exc:
        out["fp8_error"] = _error(exc)
    return out


if __name__ == "__main__":
    print(json.dumps(probe()), flush=True)
