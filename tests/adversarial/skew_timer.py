THREAT = "skewing the timer: counting only about a third of the elapsed training time"
TASK = "tiny02"  # a longer record: the skew is large in seconds
EXPECTED_STATUS = "suspicious"
EXPECTED_REASON = "outside its reported train_time"

from _common import edit  # noqa: E402


def attack(script, ctx):
    return edit(script, "1000 * (time.perf_counter() - t0)", "350 * (time.perf_counter() - t0)", count=2)
