"""Data: the shard format, the generated tiny corpus, the FineWeb shards, and the guard that checks them around every
run.
"""

from pytest_speedrun.files import lazy_exports

__all__ = [
    "DataGuard",
    "Dataset",
    "ShardHeader",
    "ShardState",
    "ensure_tiny_dataset",
    "fineweb_dataset",
    "read_header",
    "read_tokens",
    "shard_state",
    "write_shard",
]

__getattr__ = lazy_exports(__name__, {
    "DataGuard": "guard",
    "Dataset": "dataset",
    "ShardHeader": "dataset",
    "ShardState": "guard",
    "ensure_tiny_dataset": "dataset",
    "fineweb_dataset": "dataset",
    "read_header": "dataset",
    "read_tokens": "dataset",
    "shard_state": "guard",
    "write_shard": "dataset",
})
