"""Print a run's TensorBoard scalars as a table: `tools/tb_scalars.py LOGDIR TAG...`.

For README numbers and quick checks without starting TensorBoard."""

import sys

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tf_svdx.report.tensorboard import read_scalars  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    series = read_scalars(argv[1], argv[2:])
    for tag in argv[2:]:
        print(f"{tag}: " + ", ".join(f"{s}: {v:.4g}" for s, v in series.get(tag, [])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
