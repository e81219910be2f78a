"""Tiny speedrun, record 1: a GPT-2 style baseline.

A small GPT trained on the synthetic `tiny` corpus (vocab 512, sparse trigram text plus copy spans).
Architecture and optimisation follow the classic GPT-2 recipe at toy scale:

* token embedding + learned absolute position embedding, tied with the output head,
* pre-LayerNorm transformer blocks: causal multi-head attention and a GELU MLP (4x expansion),
* AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), linear warmup then cosine decay to 10%.

Runs on CPU (gloo) or CUDA (nccl), alone or under `torchrun --standalone --nproc_per_node=N`.
"""

import glob
import math
import os
import random
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# Hyperparameters


@dataclass
class Hyperparameters:
    # data (the env contract of the speedrun harness)
    train_files: str = os.environ.get("NANOGPT_TRAIN_FILES", "data/tiny/fineweb_train_*.bin")
    val_files: str = os.environ.get("NANOGPT_VAL_FILES", "data/tiny/fineweb_val_*.bin")
    val_tokens: int = int(os.environ.get("NANOGPT_VAL_TOKENS", "65536"))
    seed: int = int(os.environ.get("SPEEDRUN_SEED", "0"))
    # model
    vocab_size: int = 512
    model_dim: int = 64
    num_layers: int = 4
    num_heads: int = 2
    seq_len: int = 128
    # optimisation
    batch_size: int = 32  # sequences per step, global (split across ranks)
    num_iterations: int = 440
    learning_rate: float = 2.5e-3
    warmup_iters: int = 30
    min_lr_frac: float = 0.1
    weight_decay: float = 0.1
    # evaluation and logging
    val_every: int = 150
    val_batch_size: int = 64  # sequences per forward pass during evaluation
    timing_warmup_steps: int = 5  # the clock starts after this many training steps


args = Hyperparameters()

# -----------------------------------------------------------------------------
# Distributed setup and seeding

ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
use_cuda = torch.cuda.is_available()
if ddp:
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
else:
    rank, world_size, local_rank = 0, 1, 0
device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
master = rank == 0
assert args.batch_size % world_size == 0, "the global batch must split evenly across ranks"
torch.set_flush_denormal(True)  # tiny Adam statistics must not fall into slow denormal arithmetic on CPU


def print0(*a):
    if master:
        print(*a, flush=True)


random.seed(args.seed)
torch.manual_seed(args.seed)

# -----------------------------------------------------------------------------
# Data: FineWeb-format shards (256 int32 header, then uint16 tokens)


def load_shards(pattern: str) -> torch.Tensor:
    files = sorted(glob.glob(pattern))
    assert files, f"no shards match {pattern!r}"
    parts = []
    for path in files:
        with open(path, "rb") as f:
            header = torch.frombuffer(bytearray(f.read(256 * 4)), dtype=torch.int32)
            assert header[0].item() == 20240520 and header[1].item() == 1, f"{path}: bad shard header"
            n = header[2].item()
            raw = bytearray(f.read(2 * n))
            assert len(raw) == 2 * n, f"{path}: truncated shard"
        parts.append(torch.frombuffer(raw, dtype=torch.int16).to(torch.int64) & 0xFFFF)
    return torch.cat(parts)


train_tokens = load_shards(args.train_files)
val_tokens = load_shards(args.val_files)[: args.val_tokens]
assert len(val_tokens) == args.val_tokens, "not enough validation tokens"

local_batch = args.batch_size // world_size
batch_gen = torch.Generator().manual_seed(args.seed)  # identical on every rank: same global batch order


def next_batch():
    """Sample a global batch of random windows; this rank keeps its own contiguous slice of it."""
    starts = torch.randint(0, len(train_tokens) - args.seq_len - 1, (args.batch_size,), generator=batch_gen)
    starts = starts[rank * local_batch : (rank + 1) * local_batch]
    idx = starts[:, None] + torch.arange(args.seq_len + 1)
    buf = train_tokens[idx].to(device)
    return buf[:, :-1], buf[:, 1:]


# -----------------------------------------------------------------------------
# Model


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, 4 * dim, bias=False)
        self.proj = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, num_heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, dim: int, num_layers: int, num_heads: int, seq_len: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, dim)
        self.wpe = nn.Embedding(seq_len, dim)
        self.blocks = nn.ModuleList([Block(dim, num_heads) for _ in range(num_layers)])
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2: scale the residual-branch output projections down with depth
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * num_layers))
        self.lm_head.weight = self.wte.weight  # weight tying

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx, targets, reduction="mean"):
        x = self.wte(idx) + self.wpe.weight[: idx.size(1)]
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x)).float()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)


model = GPT(args.vocab_size, args.model_dim, args.num_layers, args.num_heads, args.seq_len).to(device)
for p in model.parameters():  # every rank starts from rank 0's weights
    if ddp:
        dist.broadcast(p.data, src=0)

# -----------------------------------------------------------------------------
# Optimiser and learning-rate schedule

decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW(
    [dict(params=decay, weight_decay=args.weight_decay), dict(params=no_decay, weight_decay=0.0)],
    lr=args.learning_rate,
    betas=(0.9, 0.95),
)


def get_lr(step: int) -> float:
    """Linear warmup, then cosine decay to min_lr_frac of the peak."""
    if step < args.warmup_iters:
        return args.learning_rate * (step + 1) / args.warmup_iters
    progress = (step - args.warmup_iters) / max(1, args.num_iterations - args.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))
    return args.learning_rate * (args.min_lr_frac + (1.0 - args.min_lr_frac) * coeff)


def all_reduce_grads():
    """Average gradients over ranks with one flat all-reduce."""
    if not ddp:
        return
    grads = [p.grad for p in model.parameters()]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


# -----------------------------------------------------------------------------
# Evaluation: mean loss over the first `val_tokens` tokens of the validation shard(s)

num_val_seqs = (args.val_tokens - 1) // args.seq_len
val_inputs = val_tokens[: num_val_seqs * args.seq_len].view(num_val_seqs, args.seq_len)
val_targets = val_tokens[1 : num_val_seqs * args.seq_len + 1].view(num_val_seqs, args.seq_len)
my_val_seqs = torch.arange(rank, num_val_seqs, world_size)  # disjoint share of the sequences


@torch.no_grad()
def evaluate() -> float:
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (summed loss, token count)
    for i in range(0, len(my_val_seqs), args.val_batch_size):
        sel = my_val_seqs[i : i + args.val_batch_size]
        x, y = val_inputs[sel].to(device), val_targets[sel].to(device)
        total[0] += model(x, y, reduction="sum").double()
        total[1] += y.numel()
    if ddp:
        dist.all_reduce(total)
    model.train()
    return (total[0] / total[1]).item()


# -----------------------------------------------------------------------------
# Training loop

def sync():
    if use_cuda:
        torch.cuda.synchronize()


N = args.num_iterations
training_time_ms = 0.0
sync()
t0 = time.perf_counter()
for step in range(N + 1):
    last_step = step == N
    if step == args.timing_warmup_steps:  # restart the clock once the warm-up steps are done
        training_time_ms = 0.0
        sync()
        t0 = time.perf_counter()
    timed_steps = step - args.timing_warmup_steps  # training steps completed since the clock restarted

    if last_step or (args.val_every > 0 and step % args.val_every == 0):
        sync()
        training_time_ms += 1000 * (time.perf_counter() - t0)
        val_loss = evaluate()
        step_avg = training_time_ms / timed_steps if timed_steps > 0 else float("nan")
        print0(f"step:{step}/{N} val_loss:{val_loss:.4f} train_time:{training_time_ms:.0f}ms step_avg:{step_avg:.2f}ms")
        sync()
        t0 = time.perf_counter()
    if last_step:
        break

    x, y = next_batch()
    loss = model(x, y)
    loss.backward()
    all_reduce_grads()
    lr = get_lr(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    model.zero_grad(set_to_none=True)

    approx_ms = training_time_ms + 1000 * (time.perf_counter() - t0)
    done = timed_steps + 1
    step_avg = approx_ms / done if done > 0 else float("nan")
    print0(f"step:{step + 1}/{N} train_loss:{loss.item():.4f} train_time:{approx_ms:.0f}ms step_avg:{step_avg:.2f}ms")

if use_cuda:
    print0(f"peak memory consumption: {torch.cuda.max_memory_allocated() // 1024 // 1024} MiB")
if ddp:
    dist.barrier()  # every rank done before any tears down
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: gloo's threads can abort it at exit
