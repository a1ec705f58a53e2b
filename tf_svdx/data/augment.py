"""Train-time data augmentation (SPEC §3), after f0k/ismir2015's `augment.py`.

Everything acts on LINEAR-magnitude excerpts [frames, bins] (bins = the `fe.n_linear_bins` = 372
bins up to 8 kHz, the only ones the mel filterbank reads) before `features.linear_to_log_mel`:

1. `stretch_shift`: time stretch and pitch shift as one affine resampling of the excerpt
   (f0k: `scipy.ndimage.affine_transform` with order-3 splines; here bilinear, see below),
   cropping `source_frames` (165; f0k: 164) of context to the `excerpt_frames` (115) centre
   frames.
2. `random_filter`: a Gaussian bump in dB over the linear bins, on a log-frequency scale.
3. `sample_params`: the random draws, from a stateless seed (shape [2] int), so that the same
   seed always gives bit-identical output along the same execution path (eager, a traced
   function or a Dataset.map) on a given device and build. Eager and traced results can differ
   in the last bit (grappler folds the filter's exp differently), never more than ~1e-7.

Core TensorFlow ops only; every function works eagerly, under `tf.function` and inside
`tf.data.Dataset.map`, with static output shapes. `augment_excerpt` handles one excerpt;
`augment_batch` is the vectorised form (same result per example to float32 rounding) and the
one to use on batches: about 1.5x cheaper per excerpt than mapping `augment_excerpt`. Per-excerpt
seeds cost one small `map_fn` loop (stateless random ops take one key each); the resampling
gathers whole rows only, and the filter gains ride on the frequency interpolation weights.

Documented choices and deviations from f0k:
- Interpolation is bilinear, not cubic-spline: it needs no prefilter, cannot overshoot (no
  negative magnitudes, so f0k's clip at 0 is unnecessary), and equals
  `scipy.ndimage.affine_transform(order=1, mode='constant', cval=0)` exactly up to float32
  rounding.
- Centres: output frame `out // 2` maps to source frame `src // 2`, i.e. the frame the excerpt
  is centred on (the label frame when windows are cut as `c - length // 2 ...`, which is how
  `pipeline._windows` cuts them): t_src = (t − out//2)/stretch + src//2. For odd `src` and
  `out` (the default 165 → 115) this is exactly t_src = (t − (out−1)/2)/stretch + (src−1)/2;
  for an odd/even pair (f0k's 164 → 115) it is the integer-frame version of that, so that
  stretch = shift = 1 is always an EXACT crop (`centre_crop`: start src//2 − out//2) rather
  than a half-frame interpolation. (f0k's own offset, .5·(len·stretch − keep), keeps the
  centre only when stretch = 1.)
- Frequency: output bin k reads source bin k / shift; source bins beyond the excerpt (above
  bin 371 when shifting down) give 0, as in scipy's mode='constant'.
- Time edges: `stretch_shift` defaults to scipy's 'constant' on both axes. `augment_excerpt`
  and `augment_batch` clamp time positions to the source instead (time_mode='nearest': edge
  frame repeated), so that too short a source can never put a silent frame into training
  data. With 165 source frames and stretch ≥ 0.7 every position lies inside the source
  (82 ± 81.43) and the two modes agree exactly; with 164 frames, stretch < 0.7037 (~0.6 % of
  draws) would read up to 0.43 frames past the last one.
- Filter width: f0k draws width = 5 + 2·N(0,1) semitones, which is ≤ 0 in ~0.6 % of draws; a
  negative width gives a narrower bump (its sign is kept, as in f0k), and |width| is floored at
  0.1 semitone so that no 0/0 can occur. Centre and width are also clipped to ranges far
  outside any sensible value ([-240, 360] and ±240 semitones) so that 2**(x/12) stays finite.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from tf_svdx.config import Augment, FrontEnd

DEFAULT_FE = FrontEnd()
DEFAULT_AUG = Augment()

_ALG = "auto_select"  # philox on CPU and GPU (threefry under XLA on TPU); cheapest key setup
_MIN_WIDTH = 0.1  # semitones
_PARAM_KEYS = ("stretch", "shift", "strength_db", "centre_semitone", "width_semitones")


# --------------------------------------------------------------------------------------------
# resampling


def _interp_rows(x, pos, mode: str, scale=None):
    """Linear interpolation of `x` [N, L, C] along axis 1 at positions `pos` [N, M] → [N, M, C].

    `pos` is float64 (positions at double precision, like scipy). Positions outside
    [0, L − 1] give 0 (mode 'constant') or are clamped to the edge rows (mode 'nearest').
    Whole rows are gathered (fast); the per-position weights, the outside-mask and an optional
    per-position `scale` [N, M] are folded into two small [N, M] weight arrays.
    """
    size = tf.shape(x, out_type=tf.int64)[1]
    last = tf.cast(size - 1, tf.float64)
    if mode == "nearest":
        pos = tf.clip_by_value(pos, 0.0, last)
    elif mode != "constant":
        raise ValueError(f"mode must be 'constant' or 'nearest', got {mode!r}")
    lo = tf.floor(pos)
    frac = tf.cast(pos - lo, x.dtype)
    w0, w1 = 1.0 - frac, frac
    if mode == "constant":
        inside = tf.cast((pos >= 0.0) & (pos <= last), x.dtype)
        w0, w1 = w0 * inside, w1 * inside
    if scale is not None:
        w0, w1 = w0 * scale, w1 * scale
    i0 = tf.clip_by_value(tf.cast(lo, tf.int64), 0, size - 1)
    i1 = tf.minimum(i0 + 1, size - 1)
    a = tf.gather(x, i0, axis=1, batch_dims=1)
    b = tf.gather(x, i1, axis=1, batch_dims=1)
    return a * w0[..., tf.newaxis] + b * w1[..., tf.newaxis]


def _as_f64(value):
    """[N] or scalar → [N] float64; Python numbers go straight to float64 (not via float32)."""
    return tf.reshape(tf.cast(tf.convert_to_tensor(value, dtype_hint=tf.float64), tf.float64),
                      [-1])


def _stretch_shift_batch(x, stretch, shift, out_frames: int, time_mode: str, gain=None):
    """x [N, src, bins], stretch/shift [N] → [N, out_frames, bins], times `gain` [N, bins].

    Time first (fewer frames after it), then frequency on the transposed excerpt, so both
    steps gather whole contiguous rows (gathering single elements along the last axis was
    ~3.5x slower on CPU than row gathers plus the two transposes).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    stretch = _as_f64(stretch)
    shift = _as_f64(shift)
    src = tf.cast(tf.shape(x)[1], tf.float64)
    bins = tf.shape(x)[2]
    t = tf.range(out_frames, dtype=tf.float64) - float(out_frames // 2)
    t_pos = t[tf.newaxis, :] / stretch[:, tf.newaxis] + tf.floor(src / 2.0)
    y = _interp_rows(x, t_pos, time_mode)  # [N, T, B]
    k_pos = tf.cast(tf.range(bins), tf.float64)[tf.newaxis, :] / shift[:, tf.newaxis]
    y = _interp_rows(tf.transpose(y, [0, 2, 1]), k_pos, "constant", scale=gain)  # [N, K, T]
    y = tf.transpose(y, [0, 2, 1])
    return tf.ensure_shape(y, [x.shape[0], out_frames, x.shape[2]])


def stretch_shift(linear, stretch, shift, out_frames: int = DEFAULT_FE.excerpt_frames, *,
                  time_mode: str = "constant"):
    """Time-stretch and pitch-shift a [src_frames, bins] magnitude excerpt → [out_frames, bins].

    Output frame t reads source frame (t − out//2)/stretch + src//2 (stretch > 1: slower, the
    source is stretched); output bin k reads source bin k/shift (shift > 1: higher pitch).
    Bilinear interpolation; positions outside the source give 0 (time_mode='nearest' clamps
    time positions to the edge frames instead). Equals
    `scipy.ndimage.affine_transform(linear, [1/stretch, 1/shift], offset=[src//2 −
    (out//2)/stretch, 0], output_shape=(out_frames, bins), order=1, mode='constant', cval=0)`.
    """
    x = tf.convert_to_tensor(linear, tf.float32)
    if x.shape.rank is not None and x.shape.rank != 2:
        raise ValueError(f"expected a [frames, bins] excerpt, got shape {x.shape}")
    y = _stretch_shift_batch(x[tf.newaxis], stretch, shift, out_frames, time_mode)
    return y[0]


def centre_crop(linear, out_frames: int = DEFAULT_FE.excerpt_frames):
    """[..., src, bins] → [..., out_frames, bins], frames src//2 − out//2 onwards (= identity of
    `stretch_shift`)."""
    x = tf.convert_to_tensor(linear, tf.float32)
    src = x.shape[-2]
    if src is not None and src < out_frames:
        raise ValueError(f"cannot crop {out_frames} frames from {src}")
    start = tf.shape(x)[-2] // 2 - out_frames // 2
    y = x[..., start:start + out_frames, :]
    return tf.ensure_shape(y, x.shape[:-2].concatenate([out_frames, x.shape[-1]]))


# --------------------------------------------------------------------------------------------
# random frequency filter


def _filter_gain_db(bins, strength_db, centre_semitone, width_semitones, fe: FrontEnd):
    """[N] parameters → [N, bins] gain in dB (f0k's `apply_random_filters`)."""
    strength = tf.cast(tf.reshape(strength_db, [-1, 1]), tf.float32)
    centre = tf.cast(tf.reshape(centre_semitone, [-1, 1]), tf.float32)
    width = tf.cast(tf.reshape(width_semitones, [-1, 1]), tf.float32)
    centre = tf.clip_by_value(centre, -240.0, 360.0)
    sign = tf.where(width < 0.0, -1.0, 1.0)
    width = sign * tf.clip_by_value(tf.abs(width), _MIN_WIDTH, 240.0)
    ln2_12 = math.log(2.0) / 12.0
    mean_hz = tf.exp(centre * ln2_12)  # 2 ** (centre / 12)
    # 2**((c + w)/12) − 2**(c/12) without the cancellation of a difference of powers
    std_hz = tf.abs(mean_hz * tf.math.expm1(width * ln2_12))
    to_bin = fe.n_linear_bins / fe.fmax
    mean_bin = mean_hz * to_bin
    std_bin = tf.maximum(std_hz * to_bin, 1e-6)
    k = tf.cast(tf.range(bins), tf.float32)[tf.newaxis, :]
    z = (k - mean_bin) / std_bin
    return strength * tf.exp(-0.5 * tf.square(z))


def _filter_gain(bins, strength_db, centre_semitone, width_semitones, fe: FrontEnd):
    """[N] parameters → [N, bins] linear gain factors 10 ** (g / 20)."""
    gain_db = _filter_gain_db(bins, strength_db, centre_semitone, width_semitones, fe)
    return tf.exp(gain_db * (math.log(10.0) / 20.0))


def _filter_batch(x, strength_db, centre_semitone, width_semitones, fe: FrontEnd):
    """x [N, frames, bins] × per-example gains."""
    x = tf.convert_to_tensor(x, tf.float32)
    gain = _filter_gain(tf.shape(x)[2], strength_db, centre_semitone, width_semitones, fe)
    return x * gain[:, tf.newaxis, :]


def random_filter(linear, strength_db, centre_semitone, width_semitones,
                  fe: FrontEnd = DEFAULT_FE):
    """Multiply each bin of [frames, bins] magnitudes by 10**(g/20), g a Gaussian bump in dB.

    g[k] = strength_db · exp(−½((k − mean_bin)/std_bin)²), mean_hz = 2**(centre/12),
    std_hz = 2**((centre + width)/12) − 2**(centre/12), bin = hz · n_linear_bins / fmax.
    """
    x = tf.convert_to_tensor(linear, tf.float32)
    return _filter_batch(x[tf.newaxis], strength_db, centre_semitone, width_semitones, fe)[0]


# --------------------------------------------------------------------------------------------
# parameters and the full augmentation


def _as_seed(seed):
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise TypeError(f"seed must be an integer tensor, got {seed.dtype}")
    return tf.cast(seed, tf.int64)


def _draw(seed, cfg: Augment):
    """One seed → [5] float32: stretch, shift, strength_db, centre_semitone, width_semitones."""
    keys = tf.random.experimental.stateless_split(_as_seed(seed), num=2, alg=_ALG)
    u = tf.random.stateless_uniform([4], keys[0], minval=-1.0, maxval=1.0, alg=_ALG)
    normal = tf.random.stateless_normal([1], keys[1], alg=_ALG)
    lo_st = 12.0 * math.log2(cfg.filter_min_hz)
    hi_st = 12.0 * math.log2(cfg.filter_max_hz)
    return tf.concat([
        1.0 + u[0:1] * cfg.max_stretch,
        1.0 + u[1:2] * cfg.max_shift,
        u[2:3] * cfg.filter_max_db,
        lo_st + (u[3:4] + 1.0) * (0.5 * (hi_st - lo_st)),
        cfg.filter_width_semitones + cfg.filter_width_std * normal,
    ], axis=0)


def sample_params(seed, cfg: Augment = DEFAULT_AUG) -> dict:
    """Draw one excerpt's augmentation parameters from a shape-[2] integer seed.

    stretch, shift = 1 + U(−1, 1)·max_stretch / max_shift; strength_db ~ U(−max_db, max_db);
    centre_semitone ~ U(12·log2(min_hz), 12·log2(max_hz)); width_semitones = 5 + 2·N(0, 1).
    The seed is split (`stateless_split`) into one key for the four uniforms (one
    `stateless_uniform` of shape [4]) and one for the normal: few ops, because they run once
    per excerpt. Scalar float32 tensors; the same seed gives the same values (philox on CPU
    and GPU).
    """
    values = _draw(seed, cfg)
    return {key: values[i] for i, key in enumerate(_PARAM_KEYS)}


def _map_params(seeds, cfg: Augment) -> dict:
    values = tf.map_fn(lambda seed: _draw(seed, cfg), seeds,
                       fn_output_signature=tf.TensorSpec([len(_PARAM_KEYS)], tf.float32))
    return {key: values[:, i] for i, key in enumerate(_PARAM_KEYS)}


_EAGER_PARAM_FNS: dict = {}


def sample_params_batch(seeds, cfg: Augment = DEFAULT_AUG) -> dict:
    """seeds [N, 2] → dict of [N] float32, element i equal to `sample_params(seeds[i])`.

    Stateless random ops take one key each (no batched form, and `vectorized_map` falls back to
    a loop for them), so this is a `map_fn` over the seeds: a graph loop, compiled once per
    config when called eagerly.
    """
    seeds = _as_seed(seeds)
    if not tf.executing_eagerly():
        return _map_params(seeds, cfg)
    key = dataclasses.astuple(cfg)
    if key not in _EAGER_PARAM_FNS:
        frozen = dataclasses.replace(cfg)
        _EAGER_PARAM_FNS[key] = tf.function(
            lambda s: _map_params(s, frozen),
            input_signature=[tf.TensorSpec([None, 2], tf.int64)])
    return _EAGER_PARAM_FNS[key](seeds)


def _augment(x, params, cfg: Augment, fe: FrontEnd, out_frames: int):
    """stretch_shift then random_filter; the filter's per-bin gains ride on the frequency
    interpolation weights (same result as the two steps, to float32 rounding; one pass less)."""
    gain = _filter_gain(tf.shape(x)[2], params["strength_db"], params["centre_semitone"],
                        params["width_semitones"], fe)
    return _stretch_shift_batch(x, params["stretch"], params["shift"], out_frames, "nearest",
                                gain=gain)


def augment_excerpt(linear_src, seed, cfg: Augment = DEFAULT_AUG, fe: FrontEnd = DEFAULT_FE,
                    out_frames: int | None = None):
    """One [src_frames, bins] linear excerpt → augmented [out_frames, bins] (SPEC §3).

    stretch_shift (time edges clamped, see the module docstring) then random_filter, with
    parameters from `sample_params(seed, cfg)`. With cfg.enabled False: `centre_crop` only.
    """
    out_frames = fe.excerpt_frames if out_frames is None else out_frames
    x = tf.convert_to_tensor(linear_src, tf.float32)
    if not cfg.enabled:
        return centre_crop(x, out_frames)
    return _augment(x[tf.newaxis], sample_params(seed, cfg), cfg, fe, out_frames)[0]


def augment_batch(linear_src, seeds, cfg: Augment = DEFAULT_AUG, fe: FrontEnd = DEFAULT_FE,
                  out_frames: int | None = None):
    """[N, src_frames, bins] with seeds [N, 2] → [N, out_frames, bins].

    Example i gets the parameters of `augment_excerpt(linear_src[i], seeds[i])` and the same
    arithmetic, so the results agree to float32 rounding (a few ulp: vectorised exp and
    position arithmetic round differently for different lengths), not bit for bit.
    """
    out_frames = fe.excerpt_frames if out_frames is None else out_frames
    x = tf.convert_to_tensor(linear_src, tf.float32)
    if not cfg.enabled:
        return centre_crop(x, out_frames)
    return _augment(x, sample_params_batch(seeds, cfg), cfg, fe, out_frames)
