"""SavedModels for TF-Serving: `saved_models/<name>/<version>/`, with named signatures.

Every graph here is core TensorFlow: the stock `tensorflow_model_server` has no tfio, Keras or
tf_svdx, so the front end (tf.signal), the standardisation, the dense whole-track model, the
latent optimiser and the Fréchet distance (float64 `eigh`) are all traced into the SavedModel.
Inputs are validated inside the graph: a wrong rank or shape is refused by the signature itself,
and NaN/Inf or a too-short waveform fail with InvalidArgument, never garbage.

A version is written under a hidden temporary name in the model's folder and renamed into place,
so a server polling the folder never sees a half-written version. `assets.extra/` carries the
config, the data fingerprint and the metrics (TF-Serving's place for such files).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf_svdx.errors import ConfigError

MODELS = ("svd_detector", "svd_generator", "svd_explainer", "svd_fid")
DIRECTIONS = ("maximise", "minimise")  # the order of the svd_fid outputs


def _finite(x: tf.Tensor, name: str) -> tf.Tensor:
    return tf.debugging.assert_all_finite(x, f"{name} contains NaN or Inf")


def _excerpts(log_mel: tf.Tensor, fe) -> tf.Tensor:
    """Refuse anything but finite [N, n_mels, excerpt_frames, 1] (InvalidArgument)."""
    expected = [fe.n_mels, fe.excerpt_frames, 1]
    with tf.control_dependencies([tf.debugging.assert_equal(
            tf.shape(log_mel)[1:], expected,
            f"log_mel must be [N, {fe.n_mels}, {fe.excerpt_frames}, 1]")]):
        return _finite(tf.identity(log_mel), "log_mel")


def next_version(folder: Path) -> int:
    versions = [int(p.name) for p in folder.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


@contextlib.contextmanager
def versioned(root: str | Path, name: str):
    """Yield {"tmp": a temporary folder}; on success it is renamed to root/name/<next integer
    version> and "path" is set to that folder. On failure nothing is left behind."""
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    box = {"tmp": folder / f".tmp-{os.getpid()}"}
    shutil.rmtree(box["tmp"], ignore_errors=True)
    try:
        yield box
        box["path"] = folder / str(next_version(folder))
        os.rename(box["tmp"], box["path"])
    except BaseException:
        shutil.rmtree(box["tmp"], ignore_errors=True)
        raise


def remove_stale_temporaries(root: str | Path) -> None:
    """Left-overs of a killed export (hidden, never a version a server would load)."""
    for tmp in Path(root).glob("*/.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def write_extra(folder: Path, files: dict) -> None:
    extra = folder / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (extra / name).write_text(json.dumps(content, indent=2, sort_keys=True, default=str),
                                  encoding="utf-8")


class DetectorModule(tf.Module):
    """svd_detector: serving_default (log-mel excerpts → probability, logit), features (→ every
    named layer's activations) and predict_waveform (22,050 Hz mono → 70 fps probabilities)."""

    _signature_names = ("serving_default", "features", "predict_waveform")

    def __init__(self, det):
        super().__init__()
        from tf_svdx.models.detector import LAYER_NAMES, feature_model
        self.fe = det.frontend
        self.model = det.model
        self.dense = det.dense
        self.layers = feature_model(det.model, LAYER_NAMES)
        self.mean = tf.constant(det.standardiser.mean[None, :, None, None])
        self.std = tf.constant(det.standardiser.std[None, :, None, None])
        self.frame_mean = tf.constant(det.standardiser.mean)
        self.frame_std = tf.constant(det.standardiser.std)
        shape = [None, self.fe.n_mels, self.fe.excerpt_frames, 1]
        spec = tf.TensorSpec(shape, tf.float32, name="log_mel")
        self.serving_default = tf.function(self._serve, input_signature=[spec])
        self.features = tf.function(self._features, input_signature=[spec])
        self.predict_waveform = tf.function(self._predict_waveform, input_signature=[
            tf.TensorSpec([None], tf.float32, name="waveform")])

    @staticmethod
    def _logit(out: tf.Tensor) -> tf.Tensor:
        """[N, 1] or [N, 2] model outputs → [N]. R1: the fc9 logit; R2 (softmax): the log-odds
        of class 1, so that sigmoid(logit) is P(singing) for both."""
        return out[:, 0] if out.shape[-1] == 1 else out[:, 1] - out[:, 0]

    def _standardise(self, log_mel):
        return (_excerpts(log_mel, self.fe) - self.mean) / self.std

    def _serve(self, log_mel):
        logit = self._logit(self.model(self._standardise(log_mel), training=False))
        return {"probability": tf.sigmoid(logit), "logit": logit}

    def _features(self, log_mel):
        out = self.layers(self._standardise(log_mel), training=False)
        return {name: value for name, value in out.items()}

    def _predict_waveform(self, waveform):
        from tf_svdx import features
        waveform = _finite(waveform, "waveform")
        tf.debugging.assert_greater_equal(
            tf.shape(waveform)[0], self.fe.frame_len,
            f"waveform is shorter than one frame ({self.fe.frame_len} samples)")
        x = features.log_mel(waveform, self.fe)  # [frames, mels], core TF ops
        pad = tf.fill([self.fe.excerpt_pad, self.fe.n_mels], float(np.log(self.fe.log_floor)))
        x = (tf.concat([pad, x, pad], 0) - self.frame_mean) / self.frame_std
        out = self.dense(tf.transpose(x)[None, :, :, None], training=False)[0]  # [T] or [T, 2]
        logit = out if out.shape.rank == 1 else out[:, 1] - out[:, 0]
        return {"frame_probability": tf.sigmoid(logit)}


class GeneratorModule(tf.Module):
    """svd_generator: serving_default (z → log-mel) and auralise (z → 22,050 Hz waveform)."""

    _signature_names = ("serving_default", "auralise")

    def __init__(self, generator, fe):
        super().__init__()
        self.fe = fe
        self.generator = generator
        spec = tf.TensorSpec([None, generator.input_shape[-1]], tf.float32, name="z")
        self.serving_default = tf.function(self._serve, input_signature=[spec])
        self.auralise = tf.function(self._auralise, input_signature=[spec])

    def _serve(self, z):
        return {"log_mel": self.generator(_finite(z, "z"), training=False)}

    def _auralise(self, z):
        from tf_svdx.audio.auralise import auralise
        log_mel = self.generator(_finite(z, "z"), training=False)
        return {"waveform": auralise(tf.transpose(log_mel[..., 0], [0, 2, 1]), fe=self.fe)}


class ExplainerModule(tf.Module):
    """svd_explainer: the compiled latent optimiser. serving_default takes per-row z0, direction
    ("maximise" / "minimise"), lr, lambda and one step count; from_seeds takes per-row integer
    seeds instead of z0 (z0 = N(0, I) drawn statelessly from (base_seed, seed), as `svdx
    explain` draws them). Both return the best log-mel, its activation and the final z."""

    _signature_names = ("serving_default", "from_seeds")

    def __init__(self, explainer, base_seed: int):
        super().__init__()
        self.explainer = explainer
        self.generator = explainer.generator
        self.detector = explainer.detector
        self.base_seed = int(base_seed)
        dim = explainer.param_shape[0]
        common = [tf.TensorSpec([None], tf.string, name="direction"),
                  tf.TensorSpec([None], tf.float32, name="lr"),
                  tf.TensorSpec([None], tf.float32, name="lam"),
                  tf.TensorSpec([], tf.int32, name="steps")]
        self.serving_default = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None, dim], tf.float32, name="z0"), *common])
        self.from_seeds = tf.function(self._from_seeds, input_signature=[
            tf.TensorSpec([None], tf.int64, name="seed"), *common])

    def _serve(self, z0, direction, lr, lam, steps):
        maximise = tf.equal(direction, "maximise")
        valid = tf.reduce_all(maximise | tf.equal(direction, "minimise"))
        rows = tf.shape(z0)[0]
        checks = [
            tf.debugging.assert_equal(valid, True, "direction must be maximise or minimise"),
            tf.debugging.assert_equal(tf.shape(direction)[0], rows, "direction: one per row"),
            tf.debugging.assert_equal(tf.shape(lr)[0], rows, "lr: one per row"),
            tf.debugging.assert_equal(tf.shape(lam)[0], rows, "lam: one per row"),
            tf.debugging.assert_positive(lr, "lr must be > 0"),
            tf.debugging.assert_non_negative(lam, "lam must be ≥ 0"),
            tf.debugging.assert_positive(steps, "steps must be ≥ 1"),
            tf.debugging.assert_less_equal(steps, 100000, "steps must be ≤ 100000")]
        with tf.control_dependencies(checks):
            sign = tf.where(maximise, 1.0, -1.0)
            out = self.explainer.run(_finite(z0, "z0"), sign, _finite(lr, "lr"),
                                     _finite(lam, "lam"), tf.reshape(steps, [1]))
        return {"log_mel": out["log_mel"][0], "activation": out["activation"][0],
                "z": out["z"][0]}

    def _from_seeds(self, seed, direction, lr, lam, steps):
        dim = self.explainer.param_shape[0]
        z0 = tf.map_fn(lambda s: tf.random.stateless_normal(
            [dim], tf.stack([tf.constant(self.base_seed, tf.int64), s])), seed,
            fn_output_signature=tf.float32)
        return self._serve(tf.reshape(z0, [-1, dim]), direction, lr, lam, steps)


def _tf_frechet(a: tf.Tensor, mean: tf.Tensor, cov: tf.Tensor, root: tf.Tensor,
                diagonal: bool) -> tf.Tensor:
    """The Fréchet distance of a batch a [N, d] to a baked Gaussian (mean, cov, root = √cov), in
    float64 with symmetric square roots (as tf_svdx.explain.frechet); diagonal: variances only."""
    a = tf.cast(a, tf.float64)
    n = tf.cast(tf.shape(a)[0], tf.float64)
    mu = tf.reduce_mean(a, 0)
    centred = a - mu
    ca = tf.matmul(centred, centred, transpose_a=True) / (n - 1)
    mean_term = tf.reduce_sum(tf.square(mu - mean))
    if diagonal:
        return mean_term + tf.reduce_sum(tf.square(tf.sqrt(tf.linalg.diag_part(ca))
                                                   - tf.sqrt(tf.linalg.diag_part(cov))))

    def sqrt_psd(m):
        w, v = tf.linalg.eigh((m + tf.transpose(m)) / 2)
        return tf.matmul(v * tf.sqrt(tf.maximum(w, 0.0)), v, transpose_b=True)

    cross = tf.linalg.trace(sqrt_psd(root @ ca @ root))
    return tf.maximum(mean_term + tf.linalg.trace(ca) + tf.linalg.trace(cov) - 2 * cross, 0.0)


class FidModule(tf.Module):
    """svd_fid: a batch of generated excerpts (serving_default) or their activations
    (score_activations) → fid_1d and fid_layer, each [2] = (maximise, minimise), against the
    real reference (top-N / bottom-N training excerpts) baked in as constants."""

    _signature_names = ("serving_default", "score_activations")

    def __init__(self, det, reference, target: str, unit, layer: str):
        super().__init__()
        from tf_svdx.explain.engine import unit_activation
        from tf_svdx.models.detector import feature_model
        self.fe = det.frontend
        self.model = feature_model(det.model, sorted({target, layer}))
        self.target, self.unit, self.layer = target, unit, layer
        self._unit_activation = unit_activation
        self.mean = tf.constant(det.standardiser.mean[None, :, None, None])
        self.std = tf.constant(det.standardiser.std[None, :, None, None])
        self.refs = []
        for direction in DIRECTIONS:
            t, acts = reference.for_direction(direction)
            acts = np.asarray(acts, np.float64).reshape(len(acts), -1)
            cov = np.atleast_2d(np.cov(acts, rowvar=False, ddof=1))
            w, v = np.linalg.eigh((cov + cov.T) / 2)
            self.refs.append({"t_mean": float(np.mean(t)), "t_std": float(np.std(t, ddof=1)),
                              "mean": tf.constant(acts.mean(0)), "cov": tf.constant(cov),
                              "root": tf.constant((v * np.sqrt(np.clip(w, 0, None))) @ v.T)})
        self.d = int(acts.shape[1])
        self.n_reference = len(t)
        # with N ≤ d the covariances are singular: the layer distance uses variances only
        self.diagonal = self.n_reference <= self.d
        shape = [None, self.fe.n_mels, self.fe.excerpt_frames, 1]
        self.serving_default = tf.function(self._serve, input_signature=[
            tf.TensorSpec(shape, tf.float32, name="log_mel")])
        self.score_activations = tf.function(self._score, input_signature=[
            tf.TensorSpec([None], tf.float32, name="target_activation"),
            tf.TensorSpec([None, self.d], tf.float32, name="layer_activation")])

    def _serve(self, log_mel):
        out = self.model((_excerpts(log_mel, self.fe) - self.mean) / self.std, training=False)
        layer = tf.reshape(out[self.layer], [tf.shape(log_mel)[0], self.d])
        return self._score(self._unit_activation(out[self.target], self.unit), layer)

    def _score(self, target_activation, layer_activation):
        t = tf.cast(_finite(target_activation, "target_activation"), tf.float64)
        layer = _finite(layer_activation, "layer_activation")
        tf.debugging.assert_greater_equal(tf.shape(t)[0], 2, "need at least 2 rows")
        tf.debugging.assert_equal(tf.shape(t)[0], tf.shape(layer)[0],
                                  "target_activation and layer_activation differ in rows")
        n = tf.cast(tf.shape(t)[0], tf.float64)
        mu = tf.reduce_mean(t)
        sd = tf.sqrt(tf.reduce_sum(tf.square(t - mu)) / (n - 1))
        one_d = tf.stack([tf.square(mu - r["t_mean"]) + tf.square(sd - r["t_std"])
                          for r in self.refs])
        multi = tf.stack([_tf_frechet(layer, r["mean"], r["cov"], r["root"], self.diagonal)
                          for r in self.refs])
        return {"fid_1d": one_d, "fid_layer": multi}


def save(module: tf.Module, root: str | Path, name: str, extra: dict) -> Path:
    """tf.saved_model.save with every tf.function attribute of `module` as a signature."""
    signatures = {key: getattr(module, key) for key in module._signature_names}
    with versioned(root, name) as box:
        tf.saved_model.save(module, str(box["tmp"]), signatures=signatures)
        write_extra(box["tmp"], extra)
    return box["path"]


def models_config(root: str | Path, names=MODELS, base: str = "/models") -> str:
    """A TF-Serving model config text proto naming every exported model."""
    entries = "\n".join(
        f"  config {{\n    name: \"{n}\"\n    base_path: \"{base}/{n}\"\n"
        f"    model_platform: \"tensorflow\"\n  }}" for n in names
        if (Path(root) / n).is_dir())
    return f"model_config_list {{\n{entries}\n}}\n"


def check_root(root: str | Path) -> Path:
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: not a folder")
    return root


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def latest_export_key(root: str | Path, name: str) -> str | None:
    """The `svdx run` key recorded in the latest version of an export (None if none)."""
    folder = Path(root) / name
    if not folder.is_dir():
        return None
    version = next_version(folder) - 1
    record = _read_json(folder / str(version) / "assets.extra" / "run_key.json") or {}
    return record.get("run_key")


def export(config, *, progress: bool = True, run_key: str | None = None) -> dict:
    """`svdx export`: every model of config.export.models as a new version under
    config.export.out, and models.config naming them. Returns {name: version folder}."""
    from tf_svdx.data.pipeline import Prepared
    from tf_svdx.evaluation import TrainedDetector
    from tf_svdx.explain.engine import Explainer
    from tf_svdx.explain.job import load_generator
    from tf_svdx.explain.reference import model_fingerprint, scan_reference
    from tf_svdx.io import atomic_path

    opts, ex = config.export, config.explain
    unknown = [m for m in opts.models if m not in MODELS]
    if unknown:
        raise ConfigError(f"export.models: unknown {unknown} (valid: {', '.join(MODELS)})")
    needs = {"detector": True, "generator": {"svd_generator", "svd_explainer"} & set(opts.models),
             "prepared": "svd_fid" in opts.models}
    for key, needed in needs.items():
        if needed and not getattr(ex, key):
            raise ConfigError(f"explain.{key}: required by export.models")
    root = check_root(opts.out)
    remove_stale_temporaries(root)
    det = TrainedDetector.load(ex.detector)
    fe = det.frontend
    common = {"data_fingerprint.json": {"data_fingerprint": det.record.get("data_fingerprint"),
                                        "detector_fingerprint": model_fingerprint(det.model)},
              "run_key.json": {"run_key": run_key}}
    det_extra = {"config.json": det.record.get("config"),
                 "metrics.json": _read_json(det.folder / "evaluation.json") or {},
                 **common}
    written = {}
    if "svd_detector" in opts.models:
        written["svd_detector"] = save(DetectorModule(det), root, "svd_detector", det_extra)
    if needs["generator"]:
        generator, gan_record = load_generator(ex.generator)
        gan_extra = {"config.json": gan_record.get("config"),
                     "metrics.json": _read_json(Path(ex.generator) / "summary.json") or {},
                     "data_fingerprint.json": {
                         "data_fingerprint": gan_record.get("data_fingerprint"),
                         "generator_fingerprint": model_fingerprint(generator),
                         "weights": gan_record.get("weights")},
                     "run_key.json": {"run_key": run_key}}
        if "svd_generator" in opts.models:
            written["svd_generator"] = save(GeneratorModule(generator, fe), root,
                                            "svd_generator", gan_extra)
        if "svd_explainer" in opts.models:
            explainer = Explainer(det.model, det.standardiser.mean, det.standardiser.std,
                                  generator, layer=ex.layer, unit=ex.unit,
                                  improvement=ex.improvement, trajectories=False)
            results = _read_json(Path(ex.out) / "results.json") or {}
            written["svd_explainer"] = save(
                ExplainerModule(explainer, config.seed), root, "svd_explainer",
                {**gan_extra, "config.json": config.to_dict(),
                 "metrics.json": {"selected": results.get("selected", {}),
                                  "target": {"layer": ex.layer, "unit": ex.unit},
                                  "base_seed": config.seed}})
    if "svd_fid" in opts.models:
        reference = scan_reference(det, Prepared(ex.prepared), split=ex.reference_split,
                                   target=ex.layer, unit=ex.unit, layer=ex.fid_layer,
                                   n=ex.reference_n, hop=ex.reference_hop,
                                   cache_dir=Path(ex.out) / "reference", progress=progress)
        module = FidModule(det, reference, ex.layer, ex.unit, ex.fid_layer)
        written["svd_fid"] = save(module, root, "svd_fid", {
            **det_extra, "metrics.json": {
                "reference": {"split": ex.reference_split, "n": ex.reference_n,
                              "target": ex.layer, "unit": ex.unit, "layer": ex.fid_layer,
                              "scanned": int(reference.count), "key": reference.fingerprint,
                              "layer_distance_diagonal_only": module.diagonal},
                "outputs_order": list(DIRECTIONS)}})
    with atomic_path(root / "models.config") as tmp:
        Path(tmp).write_text(models_config(root), encoding="utf-8")
    return written
