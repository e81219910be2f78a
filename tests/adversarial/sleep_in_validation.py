THREAT = "sleeping (or working in the background) while validation has the clock stopped"
EXPECTED_STATUS = "suspicious"
EXPECTED_REASON = "outside its reported train_time"

from _common import edit  # noqa: E402


def attack(script, ctx):
    return edit(script, "def evaluate() -> float:\n", "def evaluate() -> float:\n    time.sleep(4.0)\n")
