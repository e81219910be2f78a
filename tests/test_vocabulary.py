"""Every word of the project's vocabularies (judging/status.py) is spelled once: nowhere else in the package is
one written as a string literal. The few literals that merely look the same are listed with what they are."""

from __future__ import annotations

import ast
from pathlib import Path

from pytest_speedrun.judging import status

PACKAGE = Path(status.__file__).resolve().parent.parent
WORDS = {*status.STATUSES, status.EDIT_FAILED, *status.NODE_KINDS, status.BENCHMARK, status.SMOKE,
         *status.LAUNCHERS, *status.RUNTIME_KINDS}
# (file, word): literals that are not the vocabulary's word
HOMONYMS = {
    ("items.py", "timeout"),  # pytest-timeout's option, ini key and plugin name
    ("options.py", "timeout"),  # --speedrun-timeout
    ("options.py", "smoke"),  # --speedrun-smoke
    ("agents/scaffolds.py", "timeout"),  # a prompt template field
    ("agents/llm/settings.py", "local"),  # the LLM endpoint preset for a local server
    ("agents/registry.py", "local"),  # the same preset's agent name, listed without importing the LLM agents
    ("execution/__init__.py", "slurm"),  # the submodule's name
    ("execution/slurm.py", "slurm"),  # submitit's cluster kind
    ("pipeline/session.py", "slurm"),  # the session's Slurm job folder
    ("pipeline/smoke.py", "smoke"),  # the smoke run's working folder
}


def _literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


def test_no_vocabulary_word_is_spelled_outside_its_module() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "judging/status.py":
            continue
        found += [(rel, word) for word in sorted(_literals(path) & WORDS) if (rel, word) not in HOMONYMS]
    assert found == [], f"use the constants of judging/status.py: {found}"


def test_the_check_sees_a_literal(tmp_path: Path) -> None:
    """The scan itself: a status in code is found, the same word in a docstring is not."""
    src = tmp_path / "m.py"
    src.write_text('"""passed"""\n\ndef f(r):\n    """tampered"""\n    return r.status == "agent-error"\n')
    assert _literals(src) & WORDS == {"agent-error"}


def test_the_words_read_as_before() -> None:
    # the words go into reason texts, JUnit and results.jsonl as written
    assert f"{status.PASSED}|{status.AGENT_ERROR}|{status.NO_RESULT}" == "passed|agent-error|no-result"
    assert status.RETRYABLE == {"agent-error", "skipped"}
