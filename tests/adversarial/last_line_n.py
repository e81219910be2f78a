THREAT = ("stopping at 90% of the steps and relabelling only the final validation line "
          "(step:90/90, while every other line says /100)")
TASK = "tiny04"
EXPECTED_STATUS = "tampered"
EXPECTED_REASON = "do not agree on the number of steps"

from _common import edit  # noqa: E402


def attack(script, ctx):
    script = edit(script, "    last_step = step == N\n", "    last_step = step == N - N // 10\n")
    return edit(script, 'print0(f"step:{step}/{N} val_loss:',
                'print0(f"step:{step}/{step if last_step else N} val_loss:')
