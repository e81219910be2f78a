THREAT = "untimed precompute past the bound and its noise: 9 s of CPU work before the first step line. On tiny04"
THREAT += " the allowance is 25% of the start record's own pre-step CPU time plus 5% of t_i, and a genuine run's"
THREAT += " pre-step CPU time ranged 5.6-8.5 s over 17 CI runs: at most about 6.5 s of hidden work can pass when the"
THREAT += " reference run was slow and the attacked run fast (docs/integrity.md)"
EXPECTED_STATUS = "suspicious"
EXPECTED_REASON = "before the first training step line"

from _common import edit  # noqa: E402
from precompute_blatant import BURN  # noqa: E402


def attack(script, ctx):
    return edit(script, "N = args.num_iterations\n", BURN.format(s=9.0))
