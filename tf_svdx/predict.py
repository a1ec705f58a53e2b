"""`svdx predict`: vocal segments (.lab) and optional plots for audio files, from a trained run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tf_svdx import audio, features
from tf_svdx.data import lab
from tf_svdx.errors import SvdxError
from tf_svdx.evaluation import TrainedDetector, frame_probabilities, frame_segments, smooth
from tf_svdx.io import atomic_path


def threshold_of(det: TrainedDetector) -> tuple[float, tuple[float, ...], str]:
    """The threshold tuned by `svdx evaluate` and the pitch shifts its probabilities were averaged
    over (evaluation.json), else 0.5 on unshifted input."""
    try:
        data = json.loads((det.folder / "evaluation.json").read_text(encoding="utf-8"))
        shifts = tuple(float(s) for s in data.get("pitch_shifts", (0.0,)))
        how = "tuned on the validation split" + (
            f", probabilities averaged over pitch shifts {', '.join(f'{s:+g}' for s in shifts)}"
            if len(shifts) > 1 else "")
        return float(data["threshold"]), shifts, how
    except (OSError, ValueError, KeyError, TypeError):
        return 0.5, (0.0,), "default 0.5: run `svdx evaluate` to tune it"


def predict_file(det: TrainedDetector, path: Path, threshold: float,
                 pitch_shifts: tuple[float, ...] = (0.0,)):
    """(log-mel [T, 80], smoothed P(sing) [T], segments) for one audio file; the probabilities
    are averaged over `pitch_shifts` as `svdx evaluate` did when it tuned `threshold`."""
    fe = det.frontend
    wave = audio.load(path, fe.sample_rate)
    if features.num_frames(len(wave), fe) == 0:
        raise audio.AudioError(path, f"too short: {len(wave)} samples")
    linear = features.stft_magnitude(wave, fe)[:, :fe.n_linear_bins]
    log_mel = features.linear_to_log_mel(linear, fe).numpy()
    prob = smooth(frame_probabilities(det, log_mel, linear.numpy(), pitch_shifts))
    segments = frame_segments(prob >= threshold, len(wave) / fe.sample_rate, fe)
    return log_mel, prob, segments


def plot(path: Path, title: str, log_mel: np.ndarray, prob: np.ndarray, segments,
         threshold: float, fe):
    """PNG: log-mel (low frequencies at the bottom), P(sing) with the threshold, segments."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t_end = len(prob) / fe.fps
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 5), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1.4]})
    ax1.imshow(log_mel.T, origin="lower", aspect="auto", cmap="magma",
               extent=[0, t_end, 0, log_mel.shape[1]])
    ax1.set_ylabel("mel band")
    ax1.set_title(title)
    times = fe.frame_times(len(prob))
    ax2.plot(times, prob, lw=1, label="P(sing), median-filtered")
    ax2.axhline(threshold, color="grey", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    for start, end, label in segments:
        if label == "sing":
            ax2.axvspan(start, end, color="tab:orange", alpha=0.25)
    ax2.set_ylim(0, 1)
    ax2.set_xlim(0, t_end)
    ax2.set_xlabel("time (s)")
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def predict_files(det: TrainedDetector, paths, out_dir: Path | None, *, with_plot: bool = False,
                  report=print) -> list[tuple[str, str]]:
    """Write `<stem>.lab` (and `.png`) per input; returns the (path, reason) of failed inputs."""
    threshold, shifts, how = threshold_of(det)
    report(f"threshold {threshold:.3f} ({how})")
    failed = []
    for p in map(Path, paths):
        try:
            log_mel, prob, segments = predict_file(det, p, threshold, shifts)
        except SvdxError as e:
            failed.append((str(p), str(e)))
            report(f"skipped: {e}")
            continue
        target = (out_dir or p.parent) / f"{p.stem}.lab"
        target.parent.mkdir(parents=True, exist_ok=True)
        lab.write_lab(target, segments)
        if with_plot:
            plot(target, p.name, log_mel, prob, segments, threshold, det.frontend)
        sung = sum(e - s for s, e, label in segments if label == "sing")
        report(f"{p}: {sung:.1f} s of singing in {len(segments)} segments → {target}")
    return failed
