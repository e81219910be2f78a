"""Entry point of the attacking `command:` agent: `python tests/adversarial/apply.py <attack>`."""

import importlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import context  # noqa: E402


def main() -> None:
    module = importlib.import_module(sys.argv[1])
    script = Path(os.environ["SPEEDRUN_SCRIPT"])
    script.write_text(module.attack(script.read_text(), context()))


if __name__ == "__main__":
    main()
