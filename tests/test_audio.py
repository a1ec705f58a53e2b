"""tf_svdx.audio: decoding, mixing down, resampling, and refusing bad files with AudioError."""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

from tf_svdx import audio  # noqa: E402
from tf_svdx.errors import AudioError  # noqa: E402

try:
    from tests import badinputs  # noqa: E402
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import badinputs  # noqa: E402

SR = 22050
CORPUS = Path(__file__).parent / "data" / "tiny_corpus"
load_module = importlib.import_module("tf_svdx.audio.load")  # the attribute is the function


@pytest.fixture(scope="module")
def clip():
    y, sr = badinputs.load_source_clip()
    assert sr == SR
    return 0.9 * y / np.max(np.abs(y))


@pytest.fixture(scope="module")
def cases(tmp_path_factory, clip):
    built = badinputs.make_bad_inputs(tmp_path_factory.mktemp("bad"), clip, SR)
    return {c.name: c for c in built}


# ----------------------------------------------------------------------------------------------
# Every bad / awkward input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", badinputs.CASE_NAMES)
def test_bad_and_awkward_inputs(cases, name):
    case = cases[name]
    if case.ok:
        x = audio.load(case.path)
        assert x.dtype == np.float32 and x.ndim == 1 and len(x) > 0
        assert np.all(np.isfinite(x))
        assert case.check is None or case.check(x), case.note or name
    else:
        with pytest.raises(AudioError) as err:
            audio.load(case.path)
        assert str(case.path) in str(err.value)
        assert case.expect in err.value.reason, err.value.reason
        assert str(err.value) == f"{case.path}: {err.value.reason}"


@pytest.mark.parametrize("name", badinputs.CASE_NAMES)
def test_info_raises_only_audio_error(cases, name):
    """info() does the structural checks only (no decoding); it must never raise anything
    else, and must agree with load() on the good files."""
    case = cases[name]
    try:
        meta = audio.info(case.path)
    except AudioError as e:
        assert not case.ok, e
        return
    assert meta.sample_rate >= 1000 and meta.channels >= 1 and meta.frames > 0


def test_supported_extensions():
    assert audio.SUPPORTED_EXTENSIONS == (".wav", ".flac", ".ogg", ".mp3")
    assert all(e == e.lower() and e.startswith(".") for e in audio.SUPPORTED_EXTENSIONS)


# ----------------------------------------------------------------------------------------------
# Formats agree with each other
# ----------------------------------------------------------------------------------------------
def _write(path, y, fmt, subtype, sr=SR):
    sf.write(path, y, sr, format=fmt, subtype=subtype)
    return path


def test_lossless_formats_decode_identically(tmp_path, clip):
    wav = audio.load(_write(tmp_path / "a.wav", clip, "WAV", "PCM_16"))
    flac = audio.load(_write(tmp_path / "a.flac", clip, "FLAC", "PCM_16"))
    ref = sf.read(tmp_path / "a.wav", dtype="float32")[0]
    assert wav.shape == flac.shape == ref.shape == (len(clip),)
    assert np.max(np.abs(wav - flac)) <= 1e-4
    assert np.max(np.abs(wav - ref)) <= 1e-4
    assert np.max(np.abs(wav - clip)) <= 1e-4  # 16-bit quantisation only


def _band_db(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    edges = 100 * 2 ** (np.arange(0, 20) / 3)  # third-octave bands 100 Hz … 8 kHz
    return np.array([10 * np.log10(spec[(f >= a) & (f < b)].sum() + 1e-20)
                     for a, b in zip(edges[:-1], edges[1:])])


@pytest.mark.parametrize("fmt,subtype", [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_lossy_formats_close_in_level_spectrum_and_length(tmp_path, clip, fmt, subtype):
    """Length: libsndfile writes gapless info (Vorbis granules, LAME's Xing/Info delay and
    padding) and tfio honours it, so the length is exact here; we allow one codec frame
    (576 samples, an MPEG-2 layer III frame at 22.05 kHz) of codec delay. An MP3 without the
    Xing/Info header keeps encoder delay + padding (see the mp3_no_xing case)."""
    x = audio.load(_write(tmp_path / f"a.{fmt.lower()}", clip, fmt, subtype))
    n = len(clip)
    assert abs(len(x) - n) <= 576
    m = min(len(x), n)
    core = slice(2000, m - 2000)
    lags = np.arange(-50, 51)
    xc = [np.dot(x[core.start + k:core.stop + k], clip[core]) for k in lags]
    assert abs(int(lags[int(np.argmax(xc))])) <= 2  # no offset between decoded and source
    level_db = 20 * np.log10(np.sqrt(np.mean(x[:m] ** 2)) / np.sqrt(np.mean(clip[:m] ** 2)))
    assert abs(level_db) < 0.5
    bx, br = _band_db(x[:m]), _band_db(clip[:m])
    strong = br > br.max() - 50
    diff = np.abs(bx[strong] - br[strong])
    assert diff.mean() < 1.0 and diff.max() < 3.0, diff
    snr = 10 * np.log10(np.sum(clip[:m] ** 2) / np.sum((x[:m] - clip[:m]) ** 2))
    assert snr > 15


# ----------------------------------------------------------------------------------------------
# Resampling and mixing down
# ----------------------------------------------------------------------------------------------
def _sine(freq, sr, seconds, amp=0.5):
    return amp * np.sin(2 * np.pi * freq * np.arange(int(round(seconds * sr))) / sr)


@pytest.mark.parametrize("rate", [8000, 96000])
def test_resampled_length_frequency_and_level(tmp_path, rate):
    seconds = 2.0
    x = audio.load(_write(tmp_path / f"s{rate}.wav", _sine(1000, rate, seconds), "WAV",
                          "PCM_16", sr=rate))
    assert abs(len(x) - seconds * SR) <= 2
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak_hz = np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spec)]
    assert abs(peak_hz - 1000) <= 1.0
    inner = x[2000:-2000]
    assert abs(np.sqrt(np.mean(inner ** 2)) - 0.5 / np.sqrt(2)) < 0.01
    ref = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(x)) / SR)
    assert np.max(np.abs(inner - ref[2000:-2000])) < 0.01  # same phase: no delay introduced


def test_resampling_does_not_alias(tmp_path):
    """A 15 kHz tone at 96 kHz is above the new Nyquist (11.025 kHz): it must vanish rather
    than fold down to 7.05 kHz."""
    x = audio.load(_write(tmp_path / "hi.wav", _sine(15000, 96000, 1.0), "WAV", "PCM_16",
                          sr=96000))
    assert np.sqrt(np.mean(x[1000:-1000] ** 2)) < 1e-3


def test_other_target_rate(tmp_path, clip):
    x = audio.load(_write(tmp_path / "c.flac", clip, "FLAC", "PCM_16"), sample_rate=16000)
    assert abs(len(x) - len(clip) * 16000 / SR) <= 2


def test_six_channel_mixdown_is_channel_mean(tmp_path, clip):
    chans = np.stack([clip * (k + 1) / 6 * (-1) ** k for k in range(6)], axis=1)
    path = _write(tmp_path / "six.wav", chans, "WAV", "PCM_16")
    ref = sf.read(path, dtype="float64")[0]
    assert ref.shape == (len(clip), 6)
    x = audio.load(path)
    assert np.max(np.abs(x - ref.mean(axis=1))) <= 1e-6
    assert audio.info(path).channels == 6


def test_info_matches_soundfile(tmp_path, clip):
    for fmt, sub, ext in [("WAV", "PCM_16", "wav"), ("FLAC", "PCM_24", "flac"),
                          ("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")]:
        path = _write(tmp_path / f"i.{ext}", np.stack([clip, clip], 1), fmt, sub)
        meta, ref = audio.info(path), sf.info(path)
        assert (meta.sample_rate, meta.channels) == (ref.samplerate, ref.channels)
        assert meta.frames == ref.frames
        assert meta.duration == pytest.approx(len(clip) / SR)


# ----------------------------------------------------------------------------------------------
# tensorflow-io really runs (DEPS.md: with a mismatched TF, import works but ops fail)
# ----------------------------------------------------------------------------------------------
def test_tfio_decode_and_resample_ops_are_called():
    import tensorflow as tf
    import tensorflow_io as tfio

    path = sorted((CORPUS / "audio").glob("*.flac"))[0]
    data = path.read_bytes()
    decoded = tfio.audio.decode_flac(tf.constant(data), dtype=tf.int16).numpy()
    ref = sf.read(path, dtype="int16", always_2d=True)[0]
    np.testing.assert_array_equal(decoded, ref)
    half = tfio.audio.resample(tf.constant(decoded[:4410].astype(np.float32) / 32768),
                               rate_in=SR, rate_out=SR // 2).numpy()
    assert half.shape == (2205, 1)


def test_load_goes_through_tfio(tmp_path, clip, monkeypatch):
    import tensorflow_io as tfio

    calls = []
    real = tfio.audio.decode_wav

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tfio.audio, "decode_wav", spy)
    x = audio.load(_write(tmp_path / "spy.wav", clip, "WAV", "PCM_16"))
    assert calls == [1] and len(x) == len(clip)


# ----------------------------------------------------------------------------------------------
# Unreadable files
# ----------------------------------------------------------------------------------------------
def test_permission_denied_is_audio_error(tmp_path, clip, monkeypatch):
    path = _write(tmp_path / "locked.wav", clip, "WAV", "PCM_16")

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(load_module, "open", deny, raising=False)
    with pytest.raises(AudioError, match="permission denied") as err:
        audio.load(path)
    assert str(path) in str(err.value)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files regardless of their mode")
def test_unreadable_file_mode(tmp_path, clip):
    path = _write(tmp_path / "locked.wav", clip, "WAV", "PCM_16")
    path.chmod(0)
    try:
        with pytest.raises(AudioError, match="permission denied"):
            audio.load(path)
    finally:
        path.chmod(0o644)


# ----------------------------------------------------------------------------------------------
# The committed tiny corpus loads and its labels cover every file exactly
# ----------------------------------------------------------------------------------------------
def test_tiny_corpus_loads_and_labels_cover_files():
    files = sorted((CORPUS / "audio").glob("*.flac"))
    listed = []
    for split in ("train", "valid", "test"):
        listed += (CORPUS / "filelists" / split).read_text().split()
    assert sorted(listed) == [f.name for f in files] and len(files) == 8
    total_sing = 0.0
    for f in files:
        x = audio.load(f)
        meta = audio.info(f)
        assert meta.sample_rate == SR and meta.channels == 1 and len(x) == meta.frames
        assert 10.0 <= len(x) / SR <= 14.0 and 0.85 <= np.max(np.abs(x)) <= 0.91
        rows = [line.split() for line in (CORPUS / "labels" / f"{f.stem}.lab").read_text()
                .splitlines()]
        t = 0.0
        for start, end, lab in rows:
            assert float(start) == t and float(end) > t and lab in ("sing", "nosing")
            t = float(end)
            total_sing += (float(end) - float(start)) * (lab == "sing")
        assert abs(t - len(x) / SR) < 1e-6
        assert all(a[2] != b[2] for a, b in zip(rows, rows[1:]))  # complementary, alternating
    assert total_sing > 20.0
