"""TensorBoard helpers: spectrogram images (perceptual colormap, low frequencies at the bottom)."""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf


def spectrogram_grid(excerpts: np.ndarray, titles: list[str] | None = None,
                     columns: int = 4) -> np.ndarray:
    """[N, mels, frames] (or [N, mels, frames, 1]) → one RGBA image [1, H, W, 4] uint8."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(excerpts)
    if x.ndim == 4:
        x = x[..., 0]
    n = len(x)
    cols = min(columns, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(x[i], origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
            if titles:
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return tf.image.decode_png(buf.getvalue(), channels=4)[tf.newaxis].numpy()


def read_scalars(logdir, tags) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), …] sorted by step} for the scalar `tags` found in `logdir`, read in
    one pass (tf.summary's tensor scalars and legacy scalars alike). A step logged twice (a run
    resumed from an earlier checkpoint) keeps the value written last."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    available = events.Tags()
    series = {}
    for tag in tags:
        if tag in available.get("tensors", []):
            points = [(e.step, float(tf.make_ndarray(e.tensor_proto)))
                      for e in events.Tensors(tag)]
        elif tag in available.get("scalars", []):
            points = [(e.step, float(e.value)) for e in events.Scalars(tag)]
        else:
            continue
        series[tag] = sorted(dict(points).items())
    return series
