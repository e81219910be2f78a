THREAT = "sleeping (or working in the background) while validation has the clock stopped"
EXPECTED_STATUS = "suspicious"
# The first validation (step 0) runs before the first training step, so its sleep is also untimed work before
# training: the pre-step rule or the wall-time rule names it, whichever bound the run crosses first (a CI run
# saw only the pre-step one: 10.1 s against a 9.4 s limit).
EXPECTED_REASON = ("outside its reported train_time", "untimed work before training")

from _common import edit  # noqa: E402


def attack(script, ctx):
    return edit(script, "def evaluate() -> float:\n", "def evaluate() -> float:\n    time.sleep(4.0)\n")
