"""What `svdx explain` writes: results.json, results.csv, PNG grids, WAV renderings, TensorBoard.

results.json schema (version 1):
    {"schema": 1, "target": {"layer", "unit"}, "space": "latent" | "input",
     "settings": [{"name", "direction": "maximise" | "minimise", "lr", "lambda", "iterations",
                   "fid_1d", "fid_layer", "fid_layer_name", "fid_layer_diagonal_only",
                   "kid_layer", "rank", "activation": {mean, std, min, median, max},
                   "final_activation": {...}, "z_norm": {...}, "real_activation": {...}}, ...],
     "selected": {direction: {"name", "lr", "lambda", "iterations", "fid_1d", "png", "wav"}},
     "median": {...}, "worst": {...}  (same keys as "selected"),
     "reference": {"split", "n", "layer", "scanned", "cache"},
     "config", "config_fingerprint", "detector", "generator", "data_fingerprint"}
Every file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_svdx.io import atomic_path, write_json

CSV_FIELDS = ("name", "direction", "lr", "lambda", "iterations", "rank", "fid_1d", "fid_layer",
              "fid_layer_name", "fid_layer_diagonal_only", "kid_layer", "activation_mean",
              "activation_std", "activation_min", "activation_max", "final_activation_mean",
              "z_norm_mean", "real_activation_mean", "real_activation_std")
ROLES = ("selected", "median", "worst")


def write_csv(path: Path, entries: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for e in entries:
        flat = {k: e[k] for k in CSV_FIELDS if k in e}
        for group in ("activation", "final_activation", "z_norm", "real_activation"):
            for stat, v in e[group].items():
                if f"{group}_{stat}" in CSV_FIELDS:
                    flat[f"{group}_{stat}"] = v
        writer.writerow(flat)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(buf.getvalue(), encoding="utf-8")


def png_grid(path: Path, log_mel: np.ndarray, titles: list[str]) -> None:
    from tf_svdx.report.tensorboard import spectrogram_grid
    image = spectrogram_grid(log_mel, titles)[0]
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(tf.io.encode_png(image).numpy())


def wav(path: Path, waveform: np.ndarray, sample_rate: int) -> None:
    data = tf.audio.encode_wav(tf.constant(np.asarray(waveform, np.float32))[:, None],
                               sample_rate).numpy()
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def render(out: Path, role: str, entry: dict, rows: dict, show: int, fe) -> dict:
    """PNG grid and WAVs of the first `show` explanations of one setting (ordered by seed)."""
    from tf_svdx.audio.auralise import auralise
    folder = out / "explanations"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{entry['direction']}-{role}"
    n = min(show, len(rows["log_mel"]))
    x = rows["log_mel"][:n]
    titles = [f"seed {s}: {a:+.2f}" for s, a in zip(rows["seeds"][:n], rows["activation"][:n])]
    png_grid(folder / f"{stem}.png", x, titles)
    waves = auralise(tf.transpose(tf.constant(x), [0, 2, 1]), fe=fe).numpy()
    paths = []
    for seed, w in zip(rows["seeds"][:n], waves):
        paths.append(f"explanations/{stem}-seed{seed}.wav")
        wav(out / paths[-1], w, fe.sample_rate)
    return {"png": f"explanations/{stem}.png", "wav": paths, "waveforms": waves}


def summary(entry: dict, extra: dict) -> dict:
    keys = ("name", "direction", "lr", "lambda", "iterations", "rank", "fid_1d", "fid_layer",
            "kid_layer")
    return {**{k: entry[k] for k in keys}, "activation_mean": entry["activation"]["mean"],
            **{k: v for k, v in extra.items() if k != "waveforms"}}


def tensorboard(tb: Path, entries: list[dict], rendered: dict, fe) -> None:
    """HParams dashboard (one run per setting, FID as the metrics) and the rendered explanations
    as images and audio."""
    from tensorboard.plugins.hparams import api as hp

    from tf_svdx.report.tensorboard import spectrogram_grid

    h_dir = hp.HParam("direction", hp.Discrete(sorted({e["direction"] for e in entries})))
    h_lr = hp.HParam("lr", hp.Discrete(sorted({e["lr"] for e in entries})))
    h_lam = hp.HParam("lambda", hp.Discrete(sorted({e["lambda"] for e in entries})))
    h_it = hp.HParam("iterations", hp.Discrete(sorted({e["iterations"] for e in entries})))
    metrics = [hp.Metric("fid_1d", display_name="FID (1-D, target)"),
               hp.Metric("fid_layer", display_name="FID (layer)"),
               hp.Metric("kid_layer", display_name="KID (layer)"),
               hp.Metric("activation_mean", display_name="mean activation")]
    with tf.summary.create_file_writer(str(tb / "hparams")).as_default():
        hp.hparams_config(hparams=[h_dir, h_lr, h_lam, h_it], metrics=metrics)
    for e in entries:
        with tf.summary.create_file_writer(str(tb / "hparams" / e["name"])).as_default():
            hp.hparams({h_dir: e["direction"], h_lr: e["lr"], h_lam: e["lambda"],
                        h_it: e["iterations"]}, trial_id=e["name"])
            for key in ("fid_1d", "fid_layer", "kid_layer"):
                tf.summary.scalar(key, e[key], step=0)
            tf.summary.scalar("activation_mean", e["activation"]["mean"], step=0)
    with tf.summary.create_file_writer(str(tb / "explanations")).as_default():
        for (direction, role), (entry, rows, extra) in rendered.items():
            tag = f"{direction}/{role}"
            n = len(extra["waveforms"])
            tf.summary.image(tag, spectrogram_grid(rows["log_mel"][:n]), step=0,
                             description=f"{entry['name']}: FID {entry['fid_1d']:.3g}")
            tf.summary.audio(tag, extra["waveforms"][..., None], fe.sample_rate, step=0,
                             max_outputs=n)


def write_activations(path: Path, reference, rendered: dict) -> None:
    """For reports: the real distribution of the target (every scanned excerpt, the top-N and
    bottom-N) and, per rendered (direction, role), the explanations' best activations [seeds]
    and activation trajectories [iterations + 1, seeds]."""
    arrays = {"real/all": reference.all_target, "real/top": reference.top_target,
              "real/bottom": reference.bottom_target}
    for (direction, role), (_, rows, _) in rendered.items():
        arrays[f"{direction}/{role}/activation"] = rows["activation"]
        arrays[f"{direction}/{role}/trajectory"] = rows["trajectory_activation"]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def write_results(out: Path, document: dict, entries: list[dict]) -> None:
    write_json(out / "results.json", document)
    write_csv(out / "results.csv", entries)
