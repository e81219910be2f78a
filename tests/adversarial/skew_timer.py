THREAT = "skewing the timer: counting only half of the elapsed training time"
EXPECTED_STATUS = "suspicious"
EXPECTED_REASON = "outside its reported train_time"

from _common import edit  # noqa: E402


def attack(script, ctx):
    return edit(script, "1000 * (time.perf_counter() - t0)", "500 * (time.perf_counter() - t0)", count=2)
