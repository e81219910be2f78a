THREAT = "skewing the timer just past the noise bound: it reads 95% of the elapsed training time"
EXPECTED_STATUS = "tampered"
EXPECTED_REASON = "below the harness-observed training time"

from _common import edit  # noqa: E402


def attack(script, ctx):
    return edit(script, "1000 * (time.perf_counter() - t0)", "950 * (time.perf_counter() - t0)", count=2)
