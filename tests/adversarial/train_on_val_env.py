THREAT = "training on validation data, by reading the validation files as training files"
EXPECTED_STATUS = "tampered"
EXPECTED_REASON = "no longer reads NANOGPT_TRAIN_FILES"

from _common import edit  # noqa: E402


def attack(script, ctx):
    return edit(script, 'os.environ.get("NANOGPT_TRAIN_FILES"', 'os.environ.get("NANOGPT_VAL_FILES"')
