THREAT = "a few more untimed 'warm-up' training steps than the start record has (8 instead of 5)"
EXPECTED_STATUS = "suspicious"
EXPECTED_REASON = "8 training steps ran outside the script's clock (8 before it started"

from _common import AFTER_ARGS, edit  # noqa: E402


def attack(script, ctx):
    return edit(script, AFTER_ARGS, AFTER_ARGS + "args.timing_warmup_steps = 8\n")
