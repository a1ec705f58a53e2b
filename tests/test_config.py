import pytest

from tf_svdx import config as config_lib
from tf_svdx.errors import ConfigError


def test_defaults_are_the_published_front_end():
    fe = config_lib.Config().frontend
    assert (fe.sample_rate, fe.frame_len, fe.hop, fe.n_mels, fe.excerpt_frames) == \
        (22050, 1024, 315, 80, 115)
    assert fe.fps == 70 and fe.n_linear_bins == 372 and fe.excerpt_pad == 57


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('seed = 3\n[prepare]\ncorpus = "a"\ntracks_per_shard = 2\n'
                    '[augment]\nmax_shift = 1\n')
    cfg = config_lib.load(path, ["prepare.tracks_per_shard=5", "augment.enabled=false"])
    assert cfg.seed == 3 and cfg.prepare.corpus == "a"
    assert cfg.prepare.tracks_per_shard == 5 and cfg.augment.enabled is False
    assert cfg.augment.max_shift == 1.0 and isinstance(cfg.augment.max_shift, float)


@pytest.mark.parametrize("text,message", [
    ("[prepare]\ncorpsu = 'x'\n", "prepare.corpsu: unknown key (valid: corpus"),
    ("seeds = 1\n", "seeds: unknown key"),
    ("seed = 'x'\n", "seed: expected int"),
    ("prepare = 3\n", "prepare: is a section"),
    ("seed = \n", "invalid TOML"),
    ("[evaluate]\npitch_shifts = [0.0, -1.0]\n", "evaluate.pitch_shifts: expected one or more"),
    ("[evaluate]\npitch_shifts = []\n", "evaluate.pitch_shifts: expected one or more"),
])
def test_bad_files_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config_lib.load(path)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("item,message", [
    ("prepare.nope=1", "--config.prepare.nope: unknown key"),
    ("seed=abc", "--config.seed: expected int"),
    ("augment.enabled=maybe", "expected true/false"),
    ("seed", "expected key=value"),
    ("evaluate.pitch_shifts=0,0.7", "--config.evaluate.pitch_shifts: expected one or more"),
])
def test_bad_overrides(item, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config_lib.load(None, [item])


def test_fingerprint_tracks_every_value():
    a = config_lib.load(None, [])
    b = config_lib.load(None, ["augment.max_stretch=0.2"])
    assert a.fingerprint() == config_lib.load(None, []).fingerprint() != b.fingerprint()


def test_shipped_configs_load():
    from pathlib import Path
    for path in sorted(Path(__file__).parents[1].glob("configs/*.toml")):
        config_lib.load(path)
