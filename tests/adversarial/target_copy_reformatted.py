THREAT = ("submitting the human answer with only whitespace changed: indentation halved, blank lines dropped, "
          "wider spacing after commas (no line of it is byte-identical to the answer's)")
TASK = "tiny04"
EXPECTED_STATUS = "suspicious"
EXPECTED_REASON = "is the target record's script up to comments, blank lines and whitespace"
STATIC = True

from _common import reindent, target_script  # noqa: E402


def attack(script, ctx):
    return reindent(target_script(ctx).read_text())
