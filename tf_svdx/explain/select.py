"""Fréchet-distance scoring of every grid setting and automatic selection (SPEC §6).

For each setting, the target activations of its explanations (one per seed) are compared with the
real reference for its direction: the top-N training excerpts for maximisation, the bottom-N for
minimisation. `fid_1d` (the paper's) ranks the settings; the argmin per direction is selected.
Also reported: the multi-dimensional distance at `fid_layer` (flagged when it fell back to the
diagonal because N ≤ d) and KID, the small-sample alternative.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_svdx.explain.frechet import frechet_1d, frechet_report, kernel_inception_distance
from tf_svdx.explain.grid import GridResult, Setting, settings
from tf_svdx.models.detector import feature_model


class LayerActivations:
    """Flattened activations of one detector layer for un-standardised log-mel excerpts."""

    def __init__(self, detector, mean, std, layer: str, batch: int = 128):
        self.model = feature_model(detector, [layer])
        self.layer = layer
        self.mean = np.asarray(mean, np.float32)[None, :, None]
        self.std = np.asarray(std, np.float32)[None, :, None]
        self.batch = batch

    def __call__(self, log_mel: np.ndarray) -> np.ndarray:
        """log_mel [N, 80, 115] → [N, d]."""
        x = (np.asarray(log_mel, np.float32) - self.mean) / self.std
        outs = [self.model(tf.constant(x[i:i + self.batch, ..., None]),
                           training=False)[self.layer].numpy()
                for i in range(0, len(x), self.batch)]
        out = np.concatenate(outs)
        return out.reshape(len(out), -1)


def _stats(values: np.ndarray) -> dict:
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)), "min": float(v.min()),
            "median": float(np.median(v)), "max": float(v.max())}


def score(result: GridResult, opts, reference, layer_fn: LayerActivations) -> list[dict]:
    """One entry per setting (the documented `settings` schema of results.json)."""
    entries = []
    for setting in settings(opts):
        rows = result.select(setting)
        target_ref, layer_ref = reference.for_direction(setting.direction)
        acts = rows["activation"]
        layer_acts = layer_fn(rows["log_mel"])
        multi = frechet_report(layer_acts, layer_ref)
        entries.append({
            "name": setting.name, "direction": setting.direction, "lr": setting.lr,
            "lambda": setting.lam, "iterations": setting.iterations,
            "fid_1d": frechet_1d(acts, target_ref),
            "fid_layer": multi["value"], "fid_layer_name": layer_fn.layer,
            "fid_layer_diagonal_only": multi["diagonal_only"],
            "kid_layer": kernel_inception_distance(layer_acts, layer_ref),
            "activation": _stats(acts), "final_activation": _stats(rows["final_activation"]),
            "z_norm": _stats(rows["z_norm"]),
            "real_activation": _stats(target_ref),
        })
    return entries


def rank(entries: list[dict]) -> dict:
    """Per direction: the settings ordered by fid_1d (ties: the fewer iterations, the smaller
    lr), and the selected (argmin), median and worst of them."""
    out = {}
    for direction in dict.fromkeys(e["direction"] for e in entries):
        ordered = sorted((e for e in entries if e["direction"] == direction),
                         key=lambda e: (e["fid_1d"], e["iterations"], e["lr"]))
        for position, e in enumerate(ordered, 1):
            e["rank"] = position
        out[direction] = {"selected": ordered[0], "median": ordered[(len(ordered) - 1) // 2],
                          "worst": ordered[-1], "ordered": ordered}
    return out


def setting_of(entry: dict) -> Setting:
    return Setting(entry["direction"], entry["lr"], entry["lambda"], entry["iterations"])
