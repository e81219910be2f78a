"""The adversarial corpus: every attack in tests/adversarial/ is caught with its expected status and reason.

Each attack runs as a real `command:` agent on a tiny task (real torch training on the CPU). Attacks that the
static rules catch from the source alone (`STATIC = True`) are also checked without training, in milliseconds."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from pytest_speedrun.judging.sources import run_files
from pytest_speedrun.judging.static_rules import static_reasons
from pytest_speedrun.judging.status import PASSED, SUSPICIOUS, TAMPERED
from pytest_speedrun.tasks.manifest import find_suite, load_task

pytest_plugins = ["pytester"]

CORPUS = Path(__file__).parent / "adversarial"
ATTACKS = sorted(p.stem for p in CORPUS.glob("*.py") if not p.stem.startswith("_") and p.stem != "apply")


def _load(name: str):
    sys.path.insert(0, str(CORPUS))
    try:
        spec = importlib.util.spec_from_file_location(f"attack_{name}", CORPUS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(CORPUS))
    return module


def test_the_corpus_has_at_least_eight_attacks_with_expectations() -> None:
    assert len(ATTACKS) >= 8
    for name in ATTACKS:
        module = _load(name)
        assert module.THREAT and module.EXPECTED_STATUS in {"tampered", "suspicious", "no-result", "crashed"}
        assert module.EXPECTED_REASON


def _trained_attacks() -> list[str]:
    """Every attack that needs its run to be caught, plus one caught from the source alone (the others of that
    kind are checked without training below: their run adds nothing but minutes)."""
    static = [name for name in ATTACKS if getattr(_load(name), "STATIC", False)]
    return [name for name in ATTACKS if name not in static] + static[:1]


def _names_it(module, reasons: list[str]) -> bool:
    """Some reason names the attack: EXPECTED_REASON, or one of them when two rules see the same cheat."""
    expected = module.EXPECTED_REASON
    return any(e in r for e in ((expected,) if isinstance(expected, str) else expected) for r in reasons)


@pytest.mark.slow
@pytest.mark.parametrize("attack", _trained_attacks())
def test_attack_is_caught(attack: str, pytester: pytest.Pytester, cache_dir: Path, monkeypatch) -> None:
    module = _load(attack)
    task = getattr(module, "TASK", "tiny04")
    monkeypatch.setenv("ATTACK_CACHE_DIR", str(cache_dir))
    agent = f"command:{sys.executable} {CORPUS / 'apply.py'} {attack}"
    result = pytester.runpytest_subprocess("--speedrun-suite=tiny", f"--speedrun-agent={agent}", "-k", task,
                                           f"--speedrun-cache-dir={cache_dir}", "-p", "no:cacheprovider")
    lines = (pytester.path / ".speedrun" / "results.jsonl").read_text().splitlines()
    (record,) = [json.loads(ln) for ln in lines]
    assert record["status"] == module.EXPECTED_STATUS, (record["status"], record["reasons"])
    assert _names_it(module, record["reasons"]), record["reasons"]
    result.assert_outcomes(failed=1)


STATIC_ATTACKS = [name for name in ATTACKS if getattr(_load(name), "STATIC", False)]


@pytest.mark.parametrize("attack", STATIC_ATTACKS)
def test_static_attack_is_caught_from_the_source_alone(attack: str, tmp_path: Path) -> None:
    module = _load(attack)
    task = load_task(find_suite("tiny") / f"{getattr(module, 'TASK', 'tiny04')}.toml")
    start, target = task.start.script.path.read_text(), task.target.script.path.read_text()
    common = sys.modules["_common"]  # imported by the attack's own `from _common import ...`
    ctx = common.AttackContext(workspace=tmp_path, task_id=task.id, target_val_loss=task.target_val_loss)
    solution = module.attack(start, ctx)  # a multi-file attack also writes its modules into the workspace
    tampered, suspicious = static_reasons(start, solution, target,
                                          solution_files=run_files(tmp_path, "train_gpt2.py", solution)[1:])
    status = TAMPERED if tampered else SUSPICIOUS if suspicious else PASSED
    assert status == module.EXPECTED_STATUS, tampered + suspicious
    assert _names_it(module, tampered + suspicious), tampered + suspicious
