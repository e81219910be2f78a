THREAT = "skewing the timer: counting only about a third of the elapsed training time"
EXPECTED_STATUS = "tampered"
EXPECTED_REASON = "below the harness-observed training time"

from _common import edit  # noqa: E402


def attack(script, ctx):
    return edit(script, "1000 * (time.perf_counter() - t0)", "350 * (time.perf_counter() - t0)", count=2)
