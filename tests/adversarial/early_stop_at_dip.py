THREAT = ("early stopping on the validation set: validate every other step, stop at the first val_loss under the "
          "target and print that step as the final one (step:k/k, where every earlier line said /100)")
TASK = "tiny04"
EXPECTED_STATUS = "tampered"
EXPECTED_REASON = "do not agree on the number of steps"

from _common import edit  # noqa: E402


def attack(script, ctx):
    script = edit(script, "    if last_step or (args.val_every > 0 and step % args.val_every == 0):\n",
                  "    if last_step or step % 2 == 0:\n")  # tiny04 reaches the target only in its last steps
    return edit(script, "        val_loss = evaluate()\n",
                "        val_loss = evaluate()\n"
                f"        if 0 < step < N and val_loss < {ctx.target_val_loss}:\n"
                "            N, last_step = step, True  # report this step as the last one\n")
