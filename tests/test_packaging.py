"""What ships in the package: source and text only (no build artefacts committed inside it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "pytest_speedrun"


def test_the_package_holds_no_binary_file() -> None:
    tracked = subprocess.run(["git", "ls-files", str(PACKAGE)], capture_output=True, text=True,
                             cwd=PACKAGE.parent).stdout.split()
    files = [PACKAGE.parent / f for f in tracked] or [p for p in PACKAGE.rglob("*") if p.is_file()
                                                      and "__pycache__" not in p.parts]
    binary = [str(f) for f in files if f.exists() and b"\0" in f.read_bytes()[:8192]]
    assert binary == []
    assert not [f for f in files if f.suffix in (".whl", ".zip", ".so", ".pyc")]
