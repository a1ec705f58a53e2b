"""Print a run's TensorBoard scalars as a table: `tools/tb_scalars.py LOGDIR TAG...`.

For README numbers and quick checks without starting TensorBoard."""

import sys

import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def scalars(logdir: str, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(logdir, size_guidance={"tensors": 0})
    events.Reload()
    if tag not in events.Tags()["tensors"]:
        return []
    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    for tag in argv[2:]:
        values = scalars(argv[1], tag)
        print(f"{tag}: " + ", ".join(f"{s}: {v:.4g}" for s, v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
