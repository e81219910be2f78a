THREAT = "untimed precompute just past the bound: 3 s of CPU work before the first step line (the bound lets the"
THREAT += " start record's own pre-step time vary by 25% plus 5% of t_i)"
EXPECTED_STATUS = "suspicious"
EXPECTED_REASON = "passed before the first training step line"

from _common import edit  # noqa: E402
from precompute_blatant import BURN  # noqa: E402


def attack(script, ctx):
    return edit(script, "N = args.num_iterations\n", BURN.format(s=3.0))
