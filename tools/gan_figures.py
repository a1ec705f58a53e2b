"""README figures of a GAN run: its training curves and a fixed-z sample grid.

    tools/gan_figures.py GAN_RUN_WITH_TB SHIPPED_OR_SAME_RUN OUT_DIR

Where SHIPPED_OR_SAME_RUN holds `frechet_2048.json` (tools/gan_frechet.py --json), its
larger-sample Fréchet distances are drawn over the monitor's.

Writes OUT_DIR/gan_training.png (Wasserstein estimate, gradient penalty and the detector-fc8
Fréchet distance over generator updates, from the run's TensorBoard events) and
OUT_DIR/gan_samples.png (8 excerpts from the same fixed z the training monitor uses)."""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tf_svdx.explain.job import load_generator  # noqa: E402
from tf_svdx.report.tensorboard import read_scalars, spectrogram_grid  # noqa: E402


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    tb, run, out = Path(argv[1]) / "tb", Path(argv[2]), Path(argv[3])
    out.mkdir(parents=True, exist_ok=True)
    titles = {"gan/wasserstein": "Wasserstein estimate", "gan/gradient_penalty": "gradient penalty",
              "gan/frechet_fc8": "Fréchet distance, detector fc8"}
    series = read_scalars(tb, titles)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (tag, title) in zip(axes, titles.items()):
        steps, values = zip(*series[tag])
        ax.plot(steps, values, marker="o" if len(steps) < 20 else None,
                label="training monitor (256 samples)")
        extra = run / "frechet_2048.json"
        if tag == "gan/frechet_fc8" and extra.exists():
            import json
            rows = [r for r in json.loads(extra.read_text()) if r["step"] is not None]
            points = sorted((r["step"], r["frechet_fc8"]) for r in rows)
            ax.plot(*zip(*points), marker="s", color="#e08214",
                    label=f"{len(points)} checkpoints, {rows[0]['samples']:,} samples")
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generator updates")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "gan_training.png", dpi=80)
    generator, record = load_generator(run)
    seed = record["config"]["seed"]
    z = tf.random.stateless_normal([8, generator.input_shape[-1]], [seed, -1])
    image = spectrogram_grid(generator(z, training=False).numpy())[0]
    (out / "gan_samples.png").write_bytes(tf.io.encode_png(image).numpy())
    print(out / "gan_training.png", out / "gan_samples.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
