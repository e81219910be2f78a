THREAT = "untimed precompute past the bound and its noise: 7 s of CPU work before the first step line (on tiny04 the"
THREAT += " allowance is 25% of the start record's own pre-step CPU time plus 5% of t_i, and a genuine run's pre-step"
THREAT += " CPU time varies by up to 30% from run to run: at most about 5.5 s of hidden work can pass, see"
THREAT += " benchmarks/pre_step_noise.last.txt)"
EXPECTED_STATUS = "suspicious"
EXPECTED_REASON = "before the first training step line"

from _common import edit  # noqa: E402
from precompute_blatant import BURN  # noqa: E402


def attack(script, ctx):
    return edit(script, "N = args.num_iterations\n", BURN.format(s=7.0))
