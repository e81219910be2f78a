THREAT = "a fake final line inside source code the script echoes into its log"
EXPECTED_STATUS = "no-result"
EXPECTED_REASON = "no validation line"

from _common import AFTER_ARGS, edit  # noqa: E402


def attack(script, ctx):
    fake_block = (
        'FAKE_RESULT = """\n'
        f"step:{{N}}/{{N}} val_loss:{ctx.target_val_loss - 0.02:.4f} train_time:1000ms step_avg:1.00ms\n"
        '"""\n'
        "print(open(__file__).read(), flush=True)\n"
        "raise SystemExit(0)\n"
    )
    # The echoed line must look final: write N literally, as a record echoing its source would contain it.
    text = edit(script, AFTER_ARGS, AFTER_ARGS + fake_block)
    n = _num_iterations(script)
    return text.replace("step:{N}/{N}", f"step:{n}/{n}", 1)


def _num_iterations(script):
    for line in script.splitlines():
        if line.strip().startswith("num_iterations:"):
            return int(line.split("=")[1].split("#")[0])
    raise SystemExit("num_iterations not found")
