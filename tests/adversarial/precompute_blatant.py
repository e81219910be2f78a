THREAT = "untimed precompute before the first step line, printing nothing (15 s of CPU work)"
EXPECTED_STATUS = "suspicious"
EXPECTED_REASON = "before the first training step line"

from _common import edit  # noqa: E402

BURN = "_t0 = time.perf_counter()\nwhile time.perf_counter() - _t0 < {s}:\n    pass\nN = args.num_iterations\n"


def attack(script, ctx):
    return edit(script, "N = args.num_iterations\n", BURN.format(s=15.0))
