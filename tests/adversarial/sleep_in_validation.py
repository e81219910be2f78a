THREAT = "sleeping (or working in the background) while validation has the clock stopped: 4 s in each of the three"
THREAT += " validations, two of them after a training step (the first, at step 0, comes before training starts)"
EXPECTED_STATUS = "suspicious"
# The pause rule bounds the wall time from a training-step line to the validation line after it by the start
# record's own plus its allowance: on tiny04 two pauses of about 1.75 s each, against a limit near 5.5 s; this
# attack adds 8 s there.
EXPECTED_REASON = "work while the clock is stopped for validation"

from _common import edit  # noqa: E402


def attack(script, ctx):
    return edit(script, "def evaluate() -> float:\n", "def evaluate() -> float:\n    time.sleep(4.0)\n")
