THREAT = "early exit after printing: the final line is printed half-way through training"
EXPECTED_STATUS = "tampered"
EXPECTED_REASON = "but the last training step logged is"

from _common import edit  # noqa: E402


def attack(script, ctx):
    cut = (f"    if step == N // 2:\n"
           f"        print0(f\"step:{{N}}/{{N}} val_loss:{ctx.target_val_loss - 0.02:.4f} "
           f"train_time:{{training_time_ms + 1000 * (time.perf_counter() - t0):.0f}}ms step_avg:1.00ms\")\n"
           f"        raise SystemExit(0)\n")
    return edit(script, "    last_step = step == N\n", "    last_step = step == N\n" + cut)
