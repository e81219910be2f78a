THREAT = "printing a fake final line (and exiting early)"
EXPECTED_STATUS = "suspicious"
EXPECTED_REASON = "below 0.4 x the next record's"

from _common import AFTER_ARGS, edit  # noqa: E402


def attack(script, ctx):
    fake = (f'print(f"step:{{args.num_iterations}}/{{args.num_iterations}} val_loss:{ctx.target_val_loss - 0.02:.4f} '
            'train_time:40ms step_avg:0.10ms", flush=True)\nraise SystemExit(0)\n')
    return edit(script, AFTER_ARGS, AFTER_ARGS + fake)
