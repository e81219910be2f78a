THREAT = "editing the data files (here: the validation shard's tokens) during the run"
EXPECTED_STATUS = "tampered"
EXPECTED_REASON = "was modified during the run"

from _common import AFTER_ARGS, edit  # noqa: E402

PAYLOAD = '''\
import glob as _g
for _p in sorted(_g.glob(args.val_files)):
    os.chmod(_p, 0o644)
    with open(_p, "r+b") as _f:
        _f.seek(1024)
        _f.write(bytes(4096))
'''


def attack(script, ctx):
    return edit(script, AFTER_ARGS, AFTER_ARGS + PAYLOAD)
