"""Typed configuration: defaults here, then a TOML file from `configs/`, then `--config.a.b=value`.

Every front-end constant lives in `FrontEnd`; nothing else in the package hard-codes them.
Config files are TOML (parsed by the standard library, never executed), and a key that the
dataclasses do not define is an error naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing

import numpy as np
from pathlib import Path

from tf_svdx.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class FrontEnd:
    """SPEC §1. Frozen: the front end is part of a model's identity, not a tuning knob."""

    sample_rate: int = 22050
    frame_len: int = 1024
    hop: int = 315
    n_mels: int = 80
    fmin: float = 27.5
    fmax: float = 8000.0
    log_floor: float = 1e-7
    excerpt_frames: int = 115

    @property
    def fps(self) -> float:
        return self.sample_rate / self.hop

    @property
    def n_fft_bins(self) -> int:
        return self.frame_len // 2 + 1

    @property
    def n_linear_bins(self) -> int:
        """Bins up to fmax: the only ones the mel matrix uses (372 for the defaults)."""
        return int(self.n_fft_bins * 2 * self.fmax // self.sample_rate)

    def frame_times(self, n_frames: int):
        """Centre time in seconds of each STFT frame (frames start at sample 0, no centring)."""
        return (np.arange(n_frames) * self.hop + self.frame_len / 2) / self.sample_rate

    @property
    def excerpt_pad(self) -> int:
        """Frames of padding on each side so that every frame can be an excerpt centre (57)."""
        return self.excerpt_frames // 2


@dataclasses.dataclass
class Augment:
    """SPEC §3 train-time augmentation, applied to the linear-magnitude excerpt."""

    enabled: bool = True
    max_stretch: float = 0.3
    max_shift: float = 0.3
    # SPEC: 164 ≈ 115 / 0.7 source frames. The strongest compression (stretch 0.7) spans 164.3
    # frames, and an odd count puts the centre on a frame, so stretch 1 is an exact crop: 165.
    source_frames: int = 165
    filter_max_db: float = 10.0
    filter_min_hz: float = 150.0
    filter_max_hz: float = 8000.0
    filter_width_semitones: float = 5.0
    filter_width_std: float = 2.0


@dataclasses.dataclass
class Prepare:
    """`svdx prepare`: corpus → TFRecord shards + standardisation statistics + manifest."""

    corpus: str = ""  # Jamendo-layout folder, a CSV manifest, or an unlabelled music folder
    out: str = ""
    tracks_per_shard: int = 16
    strict: bool = False
    workers: int = 2  # decoding processes; a crash in a decoder loses one file, not the job


@dataclasses.dataclass
class Pipeline:
    """The tf.data input pipeline."""

    batch_size: int = 32
    standardise: bool = True  # detector: yes; GAN: no (it models raw log-mel)
    parallel_calls: int = 2


@dataclasses.dataclass
class MakeCorpus:
    """`svdx make-corpus`: the built-in demo corpus (tf_svdx.data.democorpus, DATA.md recipe)."""

    out: str = "work/demo_corpus"
    minutes: float = 60.0  # total audio of the main corpus (about; tracks are whole phrases)
    seed: int = 0
    workers: int = 0  # processes; 0 = one per CPU core
    stems: bool = False  # also keep stems/<track>.vocal.flac and .accompaniment.flac
    speech: bool = False  # also build the separately flagged spoken-voice subset in <out>/speech
    speech_fraction: float = 0.1  # its size, as a fraction of `minutes`
    recording_fraction: float = 0.2  # share of real instrumental recordings (all nosing)
    singers: str = "sinsy,festival,espeak"  # comma-separated, from democorpus.singers.SINGERS
    recordings: str = "wesnoth,hedgewars"  # Debian music packages to take recordings from
    min_track_s: float = 150.0  # track length range; tests use a few seconds
    max_track_s: float = 210.0
    valid_fraction: float = 0.15  # of the tracks, split by track (and by chorale / recording)
    test_fraction: float = 0.15
    soundfont: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


@dataclasses.dataclass
class Detector:
    """SPEC §3: the Schlüter & Grill CNN ("SVDNet-R1"; outputs=2 is the softmax "R2")."""

    width: float = 1.0  # multiplies every conv/dense width; tests use e.g. 0.125
    outputs: int = 1  # 1: the fc9 logit (sigmoid outside the model); 2: two-unit softmax logits
    dropout: float = 0.5
    leaky_slope: float = 0.01


@dataclasses.dataclass
class Gan:
    """SPEC §4: the WGAN-GP generator and critic of un-standardised log-mel excerpts."""

    latent_dim: int = 128
    width: float = 1.0  # multiplies every hidden conv/dense width; tests use e.g. 0.125
    leaky_slope: float = 0.2


@dataclasses.dataclass
class TrainGan:
    """`svdx train-gan`: WGAN-GP on un-standardised log-mel excerpts (SPEC §4)."""

    prepared: str = ""  # a `svdx prepare` output folder, labelled or not
    split: str = ""  # "" = "train" if the folder has one, else "unlabelled"
    out: str = "work/gan"
    steps: int = 20000  # generator updates; each follows n_critic critic updates
    n_critic: int = 5  # not published; the WGAN-GP paper's value
    batch_size: int = 16
    gp_weight: float = 10.0
    # The original's Adam settings; preset "wgan-gp" switches to the WGAN-GP paper's.
    preset: str = "original"  # original: lr 1e-5, β1 0.5 (G) / 0.9 (D), β2 0.999
    learning_rate: float = 1e-5  # | wgan-gp: lr 1e-4, β1 0, β2 0.9 for both
    beta1_generator: float = 0.5
    beta1_critic: float = 0.9
    beta2: float = 0.999
    checkpoint_every: int = 500
    scalars_every: int = 50
    image_every: int = 1000  # fixed-z spectrogram grid and auralised audio in TensorBoard
    audio_examples: int = 3
    detector: str = ""  # a train-detector run: log the Fréchet distance of its fc8 activations
    fid_every: int = 1000
    fid_samples: int = 256  # generated and real excerpts each (fc8 has 64 units at width 1)
    strategy: str = "default"  # default | mirrored | multiworker
    logical_cpus: int = 0

    PRESETS = {"wgan-gp": (1e-4, 0.0, 0.0, 0.9)}  # (lr, β1 generator, β1 critic, β2)

    def adam(self) -> tuple[float, float, float, float]:
        """(learning rate, β1 generator, β1 critic, β2) of this run's preset or own fields."""
        if self.preset not in ("original", *self.PRESETS):
            raise ConfigError(f"train_gan.preset: unknown preset {self.preset!r} "
                              f"(valid: original, {', '.join(self.PRESETS)})")
        return self.PRESETS.get(self.preset, (self.learning_rate, self.beta1_generator,
                                              self.beta1_critic, self.beta2))


@dataclasses.dataclass
class TrainDetector:
    """`svdx train-detector`: custom tf.function loop (SPEC §3 recipe)."""

    prepared: str = ""  # a `svdx prepare` output folder
    out: str = "work/detector"
    steps: int = 40000  # 20 "epochs" of 2,000 updates
    learning_rate: float = 0.01
    lr_decay: float = 0.85  # multiplied in after every `lr_decay_every` updates
    lr_decay_every: int = 2000
    momentum: float = 0.95  # Nesterov
    label_floor: float = 0.02  # smoothed targets: floor + (1 − 2·floor)·y
    eval_every: int = 2000  # validation error (and best-model selection) interval
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    strategy: str = "default"  # default | mirrored | multiworker (TF_CONFIG)
    logical_cpus: int = 0  # split the CPU into N logical devices (to test MirroredStrategy)
    image_every: int = 2000  # TensorBoard spectrogram images of validation excerpts


@dataclasses.dataclass
class Evaluate:
    """`svdx evaluate` and the `svdx run` detector stage: the pitch shifts (relative, e.g. -0.1 =
    10 % lower) whose probabilities are averaged at test time; `svdx predict` averages over the
    same shifts as the evaluation that tuned its threshold."""

    pitch_shifts: tuple[float, ...] = (0.0,)

    def __post_init__(self):
        bad = [s for s in self.pitch_shifts if not -0.5 <= s <= 0.5]
        if not self.pitch_shifts or bad:
            raise ValueError(f"pitch_shifts: expected one or more shifts in [-0.5, 0.5] "
                             f"(e.g. 0, -0.1, 0.1), got {list(self.pitch_shifts)}")


@dataclasses.dataclass
class Explain:
    """`svdx explain`: activation maximisation over a grid of settings, scored by Fréchet distance
    (SPEC §5–6). The defaults are the paper's grid; `configs/demo.toml` holds a small one."""

    generator: str = ""  # a `svdx train-gan` run folder (unused when space = "input")
    detector: str = ""  # a `svdx train-detector` run folder
    prepared: str = ""  # the prepared corpus whose split gives the real reference
    out: str = "work/explain"
    space: str = "latent"  # latent (the paper) | input (Montavon's input-space baseline)
    layer: str = "fc9"  # the target: a unit of any named detector layer
    unit: int = 0
    directions: tuple[str, ...] = ("maximise", "minimise")
    learning_rates: tuple[float, ...] = (0.1, 0.01, 0.001)
    lambdas: tuple[float, ...] = (0.1, 0.01, 0.001)
    iterations: tuple[int, ...] = (100, 500, 1000)  # snapshots of one run per (lr, λ, seed)
    seeds: int = 50
    improvement: float = 0.1  # keep a new best spectrogram only when the score rises this much
    input_init_scale: float = 1.0  # input space: p0 ~ N(0, scale²) in standardised units
    chunk_rows: int = 150  # rows per compiled call (memory bound); each chunk is resumable
    precision: str = "float32"  # float32 | bfloat16 (models in bf16, optimiser in float32)
    reference_split: str = "train"
    reference_n: int = 50  # top-N / bottom-N real excerpts for the target
    reference_hop: int = 10  # frames between scanned excerpt centres
    fid_layer: str = "fc8"  # the multi-dimensional Fréchet distance's layer
    show: int = 8  # explanations per PNG grid and WAV set


@dataclasses.dataclass
class Export:
    """`svdx export`: versioned SavedModels for TF-Serving. The models and the explainer's
    target, reference and seed come from the `explain` section."""

    out: str = "saved_models"
    models: tuple[str, ...] = ("svd_detector", "svd_generator", "svd_explainer", "svd_fid")


@dataclasses.dataclass
class Run:
    """`svdx run`: which trained runs the pipeline uses unless `--from_scratch` (then it trains
    `train_detector.out` and `train_gan.out` itself), and where the report goes."""

    detector: str = ""  # a shipped `svdx train-detector` run folder ("" = train one)
    generator: str = ""  # a shipped `svdx train-gan` run folder ("" = train one)
    report: str = ""  # "" = <explain.out>/../report


@dataclasses.dataclass
class Config:
    seed: int = 42
    frontend: FrontEnd = dataclasses.field(default_factory=FrontEnd)
    prepare: Prepare = dataclasses.field(default_factory=Prepare)
    pipeline: Pipeline = dataclasses.field(default_factory=Pipeline)
    augment: Augment = dataclasses.field(default_factory=Augment)
    make_corpus: MakeCorpus = dataclasses.field(default_factory=MakeCorpus)
    detector: Detector = dataclasses.field(default_factory=Detector)
    train_detector: TrainDetector = dataclasses.field(default_factory=TrainDetector)
    train_gan: TrainGan = dataclasses.field(default_factory=TrainGan)
    evaluate: Evaluate = dataclasses.field(default_factory=Evaluate)
    gan: Gan = dataclasses.field(default_factory=Gan)
    explain: Explain = dataclasses.field(default_factory=Explain)
    export: Export = dataclasses.field(default_factory=Export)
    run: Run = dataclasses.field(default_factory=Run)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self, *sections: str, ignore: typing.Mapping[str, typing.Iterable[str]]
                    | None = None) -> str:
        """Stable short hash of the config, recorded beside every output it produced.

        With `sections` (top-level names such as "detector" or "seed") only those enter the hash,
        less the fields named in `ignore` ({section: fields}), so that a stage's identity does
        not change when an unrelated section (another stage's options) does."""
        data = self.to_dict()
        if sections:
            data = {name: data[name] for name in sections}
        for section, fields in (ignore or {}).items():
            data[section] = {k: v for k, v in data[section].items() if k not in set(fields)}
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _coerce(value, annotation, where: str):
    """Convert a TOML value or an override string to the field's declared type."""
    if typing.get_origin(annotation) is tuple:  # tuple[T, ...]: a TOML array or "a,b,c"
        element = typing.get_args(annotation)[0]
        items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, element, f"{where}[{i}]") for i, v in enumerate(items))
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(
        annotation if isinstance(annotation, str) else getattr(annotation, "__name__", ""))
    if kind is None:
        raise ConfigError(f"{where}: cannot set a value of type {annotation}")
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool) \
            or not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _apply(obj, updates: dict, where: str):
    """Return a copy of dataclass `obj` with nested `updates` applied; unknown keys raise."""
    types = _field_types(type(obj))
    changes = {}
    for key, value in updates.items():
        here = f"{where}{key}"
        if key not in types:
            raise ConfigError(f"{here}: unknown key (valid: {', '.join(sorted(types))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{here}: is a section, give it a table of keys")
            changes[key] = _apply(current, value, here + ".")
        else:
            changes[key] = _coerce(value, types[key], here)
    try:
        return dataclasses.replace(obj, **changes)
    except ValueError as e:  # a section's own check (__post_init__), e.g. a value out of range
        raise ConfigError(f"{where}{e}") from None


def from_dict(data: dict, where: str = "") -> Config:
    """A Config from a (possibly partial) nested dict, e.g. one recorded in a run.json."""
    return _apply(Config(), data, where)


def load(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then the TOML file at `path`, then `a.b=value` overrides, in that order."""
    config = Config()
    if path:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML ({e})") from None
        config = _apply(config, data, f"{path}: ")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        nested: dict = {}
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        config = _apply(config, nested, "--config.")
    return config


def read_run(folder: str | Path, command: str) -> tuple[dict, Config]:
    """A training run folder's run.json record and the Config it recorded (`command` names the
    svdx command that makes such folders, for the error)."""
    folder = Path(folder)
    try:
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except OSError:
        raise ConfigError(f"{folder}: no run.json; not a `svdx {command}` folder") from None
    except ValueError as e:
        raise ConfigError(f"{folder / 'run.json'}: not valid JSON ({e})") from None
    return record, from_dict(record.get("config", {}), f"{folder / 'run.json'}: ")
