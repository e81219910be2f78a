"""The paper's search scaffolds, plus `single`.

Every search node is a script version run by the harness (`ctx.execute`), with the same parsing, integrity and
timing rules as a final score. Its outcome (status, metrics, the harness's deterministic log excerpt) goes into
later prompts; no LLM call parses or summarises logs.

    single      one proposal, no search: the harness runs the script once
    flat        best-of-M: M drafts from the start script
    tree        1 draft, then N children of the best node per step
    forest      N0 drafts, then N children of the best node per step
    aide        N0 drafts, then per step: with probability p_debug, debug a buggy leaf whose debug depth is
                below D_max (if there is one), else improve the best node; one child per step
    multi-aide  as aide, with N children per step

A draft is a child of the start script (the root). The best node is the valid node with the lowest train_time;
the root counts with its reference time t_i, so a node must beat it (FSR > 0) to be chosen, and the score is
never below the start script's. The budget M counts search steps: each executes one node, unless the model's
edit could not be applied after the reflections. Randomness (the p_debug draws, the choice among buggy leaves)
comes from a generator seeded with the item's seed.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_speedrun.agents.base import AgentContext, NodeResult, Solution
from pytest_speedrun.agents.edits import EditError, apply_answer
from pytest_speedrun.errors import AgentError, UsageError
from pytest_speedrun.files import write_atomic
from pytest_speedrun.judging.status import DEBUG, DRAFT, EDIT_FAILED, IMPROVE, NODE_KINDS
from pytest_speedrun.tasks.hints import regime_label

SCAFFOLDS = ("single", "flat", "tree", "forest", "aide", "multi-aide")


class LimitReached(Exception):
    """A per-item cap (LLM calls, tokens, cost, wall time) was reached: the search ends and the best node so
    far is the answer."""


# --- prompts ----------------------------------------------------------------------------------------------

TEMPLATES = ("system", "task", "hints", "no_hints", *NODE_KINDS, "reflection")  # a template per node kind
FIELDS = ("target_val_loss", "start_record", "start_time", "val_tokens", "launch", "timeout", "hints", "history",
          "instruction", "step", "script", "parent", "parent_outcome", "reason", "attempt", "limit")


class Prompts:
    """The prompt templates (`prompts/*.md` in the package, `$name` placeholders). A directory given with
    `--speedrun-prompts` overrides any of them by file name."""

    def __init__(self, override_dir: Path | None = None) -> None:
        if override_dir is not None and not override_dir.is_dir():
            raise UsageError(f"--speedrun-prompts={override_dir}: not a directory")
        packaged = resources.files(__package__).joinpath("prompts")
        self.templates: dict[str, string.Template] = {}
        self.sources: dict[str, str] = {}
        for name in TEMPLATES:
            path = override_dir / f"{name}.md" if override_dir is not None else None
            if path is not None and path.is_file():
                text, origin = path.read_text(encoding="utf-8"), str(path)
            else:
                text, origin = packaged.joinpath(f"{name}.md").read_text(encoding="utf-8"), f"prompts/{name}.md"
            template = string.Template(text)
            try:
                template.substitute({f: "" for f in FIELDS})
            except KeyError as exc:
                raise UsageError(f"{origin}: unknown placeholder ${exc.args[0]}; known: "
                                 f"{', '.join('$' + f for f in FIELDS)}") from None
            except ValueError as exc:
                raise UsageError(f"{origin}: {exc} (write $$ for a literal $)") from None
            self.templates[name], self.sources[name] = template, text
        self.digest = hashlib.sha256(json.dumps(self.sources, sort_keys=True).encode()).hexdigest()[:16]

    def render(self, name: str, **values: Any) -> str:
        return self.templates[name].substitute({f: "" for f in FIELDS} | {k: str(v) for k, v in values.items()})


# --- search -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchParams:
    scaffold: str = "single"
    budget: int = 20  # M: search steps (nodes)
    n0: int = 3  # initial drafts (forest, aide, multi-aide)
    branch: int = 3  # N: children per step (tree, forest, multi-aide)
    p_debug: float = 0.5
    max_debug_depth: int = 5  # D_max
    reflections: int = 3  # retries of an answer whose edit does not apply

    def shape(self) -> tuple[int, int, float]:
        """(initial drafts, children per step, p_debug) of the scaffold."""
        return {
            "single": (1, 0, 0.0),
            "flat": (self.budget, 1, 0.0),
            "tree": (1, self.branch, 0.0),
            "forest": (self.n0, self.branch, 0.0),
            "aide": (self.n0, 1, self.p_debug),
            "multi-aide": (self.n0, self.branch, self.p_debug),
        }[self.scaffold]

    def relevant(self) -> dict[str, Any]:
        """The parameters that change this scaffold's behaviour (for the resume key and reports)."""
        keys = {"single": (), "flat": ("budget",), "tree": ("budget", "branch"),
                "forest": ("budget", "n0", "branch"), "aide": ("budget", "n0", "p_debug", "max_debug_depth"),
                "multi-aide": ("budget", "n0", "branch", "p_debug", "max_debug_depth")}[self.scaffold]
        return {"reflections": self.reflections, **{k: getattr(self, k) for k in keys}}


@dataclass
class SearchNode:
    """One search step: a proposal and, when its edit applied, the harness's verdict on running it."""

    note: str  # draft | improve | debug
    parent: int | None  # position of the parent in Search.nodes; None: the start script
    depth: int  # consecutive debug steps leading to this node
    script: str = ""
    plan: str = ""
    form: str = ""
    reflections: int = 0
    usage: dict = field(default_factory=dict)
    result: NodeResult | None = None
    error: str = ""  # why no node ran (the edit never applied)
    children: list[int] = field(default_factory=list)

    @property
    def index(self) -> int | None:
        return self.result.index if self.result is not None else None

    @property
    def buggy(self) -> bool:
        return self.result is not None and not self.result.valid

    @property
    def beats_root(self) -> bool:
        r = self.result
        return r is not None and r.valid and r.fsr is not None and r.fsr > 0 and r.train_time_ms is not None




def _seconds(ms: float) -> str:
    s = ms / 1000
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


class Search:
    def __init__(self, params: SearchParams, ctx: AgentContext, client: Any, prompts: Prompts) -> None:
        if params.scaffold not in SCAFFOLDS:
            raise UsageError(f"--speedrun-scaffold={params.scaffold}: not one of {', '.join(SCAFFOLDS)}")
        self.p, self.ctx, self.client, self.prompts = params, ctx, client, prompts
        self.rng = random.Random(ctx.seed)
        self.nodes: list[SearchNode] = []
        self.start = ctx.start_script
        self.stopped: str | None = None

    # --- driving ---

    def run(self) -> Solution:
        try:
            if self.p.scaffold == "single":
                return self._single()
            if self.ctx.execute is None:
                raise AgentError(f"scaffold {self.p.scaffold} needs the harness's node runner (ctx.execute)")
            self._search()
            best = self.best()
            script = best.script if best is not None else self.start
            return Solution(script=script, node=best.index if best is not None else None, usage=self.usage(),
                            transcript=self._transcript())
        except AgentError as exc:
            exc.usage = self.usage()  # what the failed search spent goes into the item's record
            raise
        finally:
            self._save()

    def _single(self) -> Solution:
        try:
            node = self._propose(None, DRAFT)
        except LimitReached as exc:
            raise AgentError(f"no answer before a cap was reached: {exc}") from None
        if not node.script:
            raise AgentError(f"no usable edit after {self.p.reflections} reflection(s): {node.error}")
        return Solution(script=node.script, usage=self.usage(), transcript=self._transcript())

    def _search(self) -> None:
        drafts, branch, p_debug = self.p.shape()
        try:
            for _ in range(min(drafts, self.p.budget)):
                self._step(None, DRAFT)
            while len(self.nodes) < self.p.budget:
                target, note = None, IMPROVE
                if p_debug > 0 and self.rng.random() < p_debug:
                    candidates = self.debuggable()
                    if candidates:
                        target, note = self.rng.choice(candidates), DEBUG
                if note == IMPROVE:
                    target = self.best_position()
                    note = IMPROVE if target is not None else DRAFT
                for _ in range(min(branch, self.p.budget - len(self.nodes))):
                    self._step(target, note)
        except LimitReached as exc:
            self.stopped = str(exc)

    def best_position(self) -> int | None:
        """Position of the valid node with the lowest train_time, if it beats the start script (the root's t_i)."""
        valid = [i for i, n in enumerate(self.nodes) if n.beats_root]
        return min(valid, key=lambda i: (self.nodes[i].result.train_time_ms, i)) if valid else None

    def best(self) -> SearchNode | None:
        pos = self.best_position()
        return self.nodes[pos] if pos is not None else None

    def debuggable(self) -> list[int]:
        """Positions of buggy leaves whose debug depth is below D_max."""
        return [i for i, n in enumerate(self.nodes)
                if n.buggy and not n.children and n.depth < self.p.max_debug_depth]

    # --- one step ---

    def _step(self, parent: int | None, note: str) -> None:
        node = self._propose(parent, note)
        if node.script:
            self.client.check_limits(wall_only=True)  # no run starts past the wall-time cap
            parent_index = self.nodes[parent].index if parent is not None else None
            node.result = self.ctx.execute(node.script, parent=parent_index, note=note)
            if node.result.reused_from:  # the interrupted attempt spent this run's time: it counts to the cap
                self.client.credit_s += node.result.wall_s
        self._save()

    def _propose(self, parent: int | None, note: str) -> SearchNode:
        """Ask for an edit of the parent's script (the start script for drafts), with reflections on edits that
        do not apply. The node is recorded as soon as it exists, so usage is never lost."""
        base = self.nodes[parent] if parent is not None else None
        depth = base.depth + 1 if base is not None and note == DEBUG else 0
        node = SearchNode(note=note, parent=parent, depth=depth)
        current = base.script if base is not None else self.start
        system = {"role": "system", "content": self.prompts.render("system")}
        messages = [system, {"role": "user", "content": self._prompt(base, note, current)}]
        # The cache key sees the prompt with every run-derived part masked: the figures, the verdicts and which
        # attempt was fastest differ between runs of the same scripts on a noisy machine (a run flagged disturbed
        # in one session and not in the next), and a replay must still find its answers. What the key keeps is
        # what the answers alone decide: the scripts, the notes, the ideas, the edit errors.
        key = [system, {"role": "user", "content": self._prompt(base, note, current, masked=True)}]
        before = self.client.usage.to_json()
        purpose = f"step {len(self.nodes) + 1}: {note}" + (f" of node {base.index}" if base is not None else "")
        self.nodes.append(node)
        if parent is not None:
            self.nodes[parent].children.append(len(self.nodes) - 1)
        try:
            for attempt in range(self.p.reflections + 1):
                answer = self.client.complete(messages, purpose if attempt == 0 else f"{purpose}, reflection {attempt}",
                                              key_messages=key)
                try:
                    edit = apply_answer(current, answer)
                except EditError as exc:
                    node.error = str(exc)
                    if attempt == self.p.reflections:
                        break
                    node.reflections += 1
                    reflection = [{"role": "assistant", "content": answer},
                                  {"role": "user", "content": self.prompts.render(
                                      "reflection", reason=exc, attempt=attempt + 1, limit=self.p.reflections)}]
                    messages, key = messages + reflection, key + reflection
                    continue
                node.script, node.plan, node.form, node.error = edit.script, edit.plan, edit.form, ""
                break
        except LimitReached as exc:
            node.usage = self.client.usage.since(before)
            if node.usage["calls"] == 0:  # nothing was asked for this step: it did not happen
                self.nodes.pop()
                if parent is not None:
                    self.nodes[parent].children.pop()
            else:
                node.script, node.error = "", f"stopped before an edit applied: {exc}"
            raise
        node.usage = self.client.usage.since(before)
        return node

    # --- prompts ---

    def _prompt(self, base: SearchNode | None, note: str, script: str, masked: bool = False) -> str:
        task = self.ctx.task
        n = task.launch.nproc_per_node
        launch = "python train_gpt2.py" if n == 1 else f"torchrun --standalone --nproc_per_node={n} train_gpt2.py"
        hints = (self.prompts.render("hints", hints=self.ctx.hints.strip()) if self.ctx.hints
                 else self.prompts.render("no_hints", target_val_loss=f"{task.target_val_loss:g}"))
        step = f"step {len(self.nodes) + 1} of at most {self.p.budget}" if self.p.scaffold != "single" else "one try"
        instruction = self.prompts.render(
            note, step=step, script=script.rstrip("\n"),
            parent="" if base is None else "*" if masked else base.index,
            parent_outcome=self._outcome(base, masked) if base is not None else "")
        return self.prompts.render(
            "task", target_val_loss=f"{task.target_val_loss:g}", start_record=task.start.record,
            start_time=_seconds(task.start.train_time_ms), val_tokens=task.launch.env.get("NANOGPT_VAL_TOKENS", "set"),
            launch=launch, timeout=_seconds(task.launch.timeout_s * 1000), hints=hints, history=self._history(masked),
            instruction=instruction)

    def _history(self, masked: bool = False) -> str:
        if not self.nodes:
            return "None yet."
        lines = []
        for node in self.nodes:
            origin = "from the start script" if node.parent is None else \
                f"of attempt {'*' if masked else self.nodes[node.parent].index}"
            head = f"{node.note} {origin}"
            if node.result is None:
                if node.error:
                    lines.append(f"- (no run) {head}: the answer could not be applied: {node.error}")
                continue
            idea = f" Idea: {node.plan}" if node.plan else ""
            lines.append(f"- attempt {node.index} ({head}): {self._summary(node.result, masked)}.{idea}")
        return "\n".join(lines) or "None yet."

    @staticmethod
    def _summary(r: NodeResult, masked: bool = False) -> str:
        """One line on a node's run; `masked` (for the cache key) hides all of it: the figures and the verdict."""
        if masked:
            return "*"
        if r.valid and r.train_time_ms is not None:
            faster = "faster" if r.fsr is not None and r.fsr > 0 else "not faster"
            return (f"valid, val_loss {r.val_loss:.4f}, train_time {_seconds(r.train_time_ms)} ({faster} than the "
                    "start script)")
        text = r.status
        if r.reasons:
            text += ": " + "; ".join(r.reasons)
        if r.val_loss is not None:
            text += f" (val_loss {r.val_loss:.4f})"
        return text

    def _outcome(self, node: SearchNode, masked: bool = False) -> str:
        r = node.result
        if r is None:
            return "(not run)"
        excerpt = "*" if masked else (r.log_excerpt.strip() or "(empty log)")
        return f"{self._summary(r, masked)}\n\nLast lines of its log:\n\n```\n{excerpt}\n```"

    # --- records ---

    def usage(self) -> dict[str, Any]:
        data = self.client.usage.to_json()
        data["stopped"] = self.stopped or ""
        data["nodes"] = [dict(index=n.index, parent=self.nodes[n.parent].index if n.parent is not None else None,
                              note=n.note, **n.usage) for n in self.nodes]
        return data

    def tree(self) -> dict[str, Any]:
        """The node tree as JSON (saved as `search.json` in the item's artifacts)."""
        best = self.best()
        nodes = []
        for pos, n in enumerate(self.nodes):
            r = n.result
            nodes.append({
                "step": pos + 1, "index": n.index,
                "parent": self.nodes[n.parent].index if n.parent is not None else None,
                "parent_step": n.parent + 1 if n.parent is not None else None, "note": n.note,
                "debug_depth": n.depth, "status": r.status if r else EDIT_FAILED,
                "kind": r.kind if r else "", "reasons": list(r.reasons) if r else [n.error],
                "val_loss": r.val_loss if r else None, "train_time_ms": r.train_time_ms if r else None,
                "fsr": r.fsr if r else None, "form": n.form, "reflections": n.reflections, "plan": n.plan,
                "children": [self.nodes[c].index for c in n.children], **n.usage,
            })
        return {"scaffold": self.p.scaffold, "params": asdict(self.p), "seed": self.ctx.seed,
                "hints": regime_label(self.ctx.hint_levels), "best": best.index if best else None,
                "stopped": self.stopped or "", "usage": self.client.usage.to_json(), "nodes": nodes}

    def _save(self) -> None:
        write_atomic(self.ctx.artifacts_dir / "search.json", json.dumps(self.tree(), indent=2, default=str) + "\n")

    def _transcript(self) -> str | None:
        log = self.client.transcript.log
        return log.read_text(encoding="utf-8") if log.exists() else None
