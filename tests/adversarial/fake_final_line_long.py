THREAT = "printing a fake final line with a plausible train_time, without training"
EXPECTED_STATUS = "tampered"
EXPECTED_REASON = "exceeds the harness-measured wall time"

from _common import AFTER_ARGS, edit  # noqa: E402


def attack(script, ctx):
    fake = (f'print(f"step:{{args.num_iterations}}/{{args.num_iterations}} val_loss:{ctx.target_val_loss - 0.02:.4f} '
            'train_time:600000ms step_avg:100.00ms", flush=True)\nraise SystemExit(0)\n')
    return edit(script, AFTER_ARGS, AFTER_ARGS + fake)
