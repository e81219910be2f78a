"""Stand-in for the FP8 construct that breaks on a torch which checks custom ops' fakes (our own code, no record
text): a projection through an FP8 custom op whose hand-written backward op returns the weight's gradient
column-major, while the fake registered for that backward op returns it row-major.

Run as a script: it trains a few steps of the projection, compiled, on CUDA when present, else on the CPU (torch
2.13's CPU build runs torch._scaled_mm on float8). On a torch that checks fake against real strides the first
backward step raises inductor's `expected size ... stride ...` assertion; after tasks/compat.py's
`fp8-fake-strides` fix it prints `standin: ok`. Run it with a private TORCHINDUCTOR_CACHE_DIR: a shared one can
serve a graph compiled with the other fake's strides.
"""

import torch
from torch import Tensor

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
STEPS = 3


def _unit(like: Tensor) -> Tensor:
    return torch.ones((), dtype=torch.float32, device=like.device)


@torch.library.custom_op("compat_standin::fp8_proj", mutates_args=())
def fp8_proj(acts: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    acts_q = acts.to(torch.float8_e4m3fn)
    weight_q = weight.to(torch.float8_e4m3fn)
    out = torch._scaled_mm(acts_q, weight_q.T, out_dtype=torch.bfloat16, scale_a=_unit(acts), scale_b=_unit(acts))
    return out, acts_q, weight_q


@fp8_proj.register_fake
def fp8_proj_meta(acts: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return acts @ weight.T, acts.to(torch.float8_e4m3fn), weight.to(torch.float8_e4m3fn)


def _grads(upstream: Tensor, acts_q: Tensor, weight_q: Tensor) -> tuple[Tensor, Tensor]:
    up_q = upstream.to(torch.float8_e5m2)
    d_acts = torch._scaled_mm(up_q, weight_q.T.contiguous().T, out_dtype=torch.bfloat16,
                              scale_a=_unit(upstream), scale_b=_unit(upstream))
    d_weight_by_col = torch._scaled_mm(acts_q.T.contiguous(), up_q.T.contiguous().T, out_dtype=torch.bfloat16,
                                       scale_a=_unit(upstream), scale_b=_unit(upstream))
    d_weight = d_weight_by_col.T
    return d_acts, d_weight


@torch.library.custom_op("compat_standin::fp8_proj_grads", mutates_args=())
def fp8_proj_grads(upstream: Tensor, acts_q: Tensor, weight_q: Tensor) -> tuple[Tensor, Tensor]:
    return _grads(upstream, acts_q, weight_q)


@fp8_proj_grads.register_fake
def fp8_proj_grads_meta(upstream: Tensor, acts_q: Tensor, weight_q: Tensor) -> tuple[Tensor, Tensor]:
    return torch.empty_like(acts_q, dtype=torch.bfloat16), torch.empty_like(weight_q, dtype=torch.bfloat16)


def _backward(ctx, upstream: Tensor, *_):
    acts_q, weight_q = ctx.saved_tensors
    return fp8_proj_grads(upstream, acts_q, weight_q)


def _save(ctx, inputs, output):
    ctx.save_for_backward(output[1], output[2])
    ctx.set_materialize_grads(False)


fp8_proj.register_autograd(_backward, setup_context=_save)


def main() -> None:
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(64, 32, device=DEVICE, dtype=torch.bfloat16) * 0.1)
    acts = torch.randn(16, 32, device=DEVICE, dtype=torch.bfloat16)
    target = torch.randn(16, 64, device=DEVICE, dtype=torch.bfloat16)
    project = torch.compile(lambda a: fp8_proj(a, weight)[0])  # only the ops compiled: no kernel to build
    for step in range(STEPS):
        out = project(acts)
        loss = (out.float() - target.float()).square().mean()
        loss.backward()
        with torch.no_grad():
            weight -= 0.1 * weight.grad
            weight.grad = None
        print(f"standin: step {step + 1}/{STEPS} loss {loss.item():.4f}", flush=True)
    print("standin: ok", flush=True)


if __name__ == "__main__":
    main()
