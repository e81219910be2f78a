"""The shape recorder of steps-scored runs (judging/steps_contract.py): loaded by Python's `site` at start-up
because the harness puts this folder first on PYTHONPATH, in every process of the run (torchrun's ranks too).

Standard library only, and nothing happens until the script imports torch: then the recorder wraps
`torch.nn.Module.__call__`, `torch.nn.functional.scaled_dot_product_attention`, `torch.autograd.backward` and
`torch.autograd.grad`, and writes what it saw to `$SPEEDRUN_STEPS_RECORD/rank<RANK>.json` after every backward
pass and at exit:

* forwards: calls of a module that owns parameters, entered from outside any module, while autograd records
  (the model's training forward passes; validation under no_grad is not counted), with the shapes of their
  tensor inputs and the shapes of the module's parameters;
* attention: the (query, key) shapes of scaled_dot_product_attention while autograd records (heads, head width);
* backwards: calls of torch.autograd.backward (what Tensor.backward calls) and torch.autograd.grad.

With SPEEDRUN_STEPS_STOP_AFTER=K the process writes its record and exits after its K-th backward pass: the
harness's short probe of a start record. Then any sitecustomize this folder shadows is run as usual.
"""

from __future__ import annotations

import atexit
import importlib.machinery
import importlib.util
import json
import os
import sys
import threading

RECORD_ENV = "SPEEDRUN_STEPS_RECORD"
STOP_ENV = "SPEEDRUN_STEPS_STOP_AFTER"
_HERE = os.path.dirname(os.path.abspath(__file__))


class _Recorder:
    def __init__(self, out_dir: str, stop_after: int) -> None:
        rank = os.environ.get("RANK", "0")
        self.path = os.path.join(out_dir, f"rank{rank}.json")
        self.stop_after = stop_after
        self.local = threading.local()
        self.data: dict = {"rank": int(rank) if rank.isdigit() else 0,
                           "world_size": int(os.environ.get("WORLD_SIZE", "1") or 1),
                           "forwards": 0, "backwards": 0, "inputs": {}, "params": {}, "attention": {}}
        self.seen_modules: set[int] = set()

    def write(self) -> None:
        if not (self.data["forwards"] or self.data["backwards"]):
            return  # a launcher process (torchrun's parent) that trained nothing
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.data, f, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            pass

    def count(self, table: str, key: str) -> None:
        self.data[table][key] = self.data[table].get(key, 0) + 1


def _shapes(torch, values) -> list[list[int]]:
    return [list(v.shape) for v in values if isinstance(v, torch.Tensor)]


def _install(torch, rec: _Recorder) -> None:
    module_call = torch.nn.Module.__call__
    sdpa = torch.nn.functional.scaled_dot_product_attention
    backward, grad = torch.autograd.backward, torch.autograd.grad

    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)

    def call(self, *args, **kwargs):
        if compiling():  # inside a graph torch.compile traces: no Python side effects (the outer call counted)
            return module_call(self, *args, **kwargs)
        depth = getattr(rec.local, "depth", 0)
        if depth == 0 and torch.is_grad_enabled():
            params = list(self.parameters())
            if params:
                rec.data["forwards"] += 1
                inputs = _shapes(torch, args) + _shapes(torch, (kwargs[k] for k in sorted(kwargs)))
                rec.count("inputs", json.dumps(inputs))
                if id(self) not in rec.seen_modules:
                    rec.seen_modules.add(id(self))
                    rec.count("params", json.dumps(sorted(list(p.shape) for p in params)))
        rec.local.depth = depth + 1
        try:
            return module_call(self, *args, **kwargs)
        finally:
            rec.local.depth = depth

    def attention(query, key, *args, **kwargs):
        if torch.is_grad_enabled() and not compiling():
            rec.count("attention", json.dumps([list(query.shape), list(key.shape)]))
        return sdpa(query, key, *args, **kwargs)

    def counted(fn):
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            rec.data["backwards"] += 1
            rec.write()
            if rec.stop_after and rec.data["backwards"] >= rec.stop_after:
                sys.stdout.flush()
                os._exit(0)
            return out
        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper

    torch.nn.Module.__call__ = call
    torch.nn.functional.scaled_dot_product_attention = attention
    torch.autograd.backward, torch.autograd.grad = counted(backward), counted(grad)
    real_exit = os._exit

    def exit_after_writing(code):
        rec.write()
        real_exit(code)

    os._exit = exit_after_writing  # the records leave distributed runs with os._exit, which skips atexit
    atexit.register(rec.write)


class _TorchWatcher:
    """A meta-path finder that installs the recorder right after `import torch` finishes, so nothing changes for
    a process that never imports torch, and a script's settings made before its import still apply."""

    def __init__(self, rec: _Recorder) -> None:
        self.rec = rec

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_install(module):
            exec_module(module)
            _install(module, self.rec)

        spec.loader.exec_module = exec_then_install
        return spec


def _start() -> None:
    out_dir = os.environ.get(RECORD_ENV)
    if not out_dir:
        return
    stop = os.environ.get(STOP_ENV, "")
    rec = _Recorder(out_dir, int(stop) if stop.isdigit() else 0)
    if "torch" in sys.modules:
        _install(sys.modules["torch"], rec)
    else:
        sys.meta_path.insert(0, _TorchWatcher(rec))


def _chain() -> None:
    """Run the sitecustomize this one shadows (a distribution's or a virtualenv's), as site would have."""
    others = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_start()
_chain()
