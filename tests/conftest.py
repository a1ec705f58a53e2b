import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile  # noqa: E402

TINY_CORPUS = Path(__file__).parent / "data" / "tiny_corpus"


@pytest.fixture(scope="session")
def tiny_corpus() -> Path:
    assert (TINY_CORPUS / "filelists" / "train").exists(), "tests/data/tiny_corpus is missing"
    return TINY_CORPUS


@pytest.fixture(scope="session")
def real_clip(tiny_corpus) -> np.ndarray:
    """A few seconds of real rendered music at 22,050 Hz, read with libsndfile (not our loader)."""
    path = sorted((tiny_corpus / "audio").glob("*.flac"))[0]
    wave, sr = soundfile.read(path, dtype="float32")
    assert sr == 22050 and wave.ndim == 1
    return wave[: 5 * sr]


@pytest.fixture(scope="session")
def tiny_prepared(tiny_corpus, tmp_path_factory) -> Path:
    """The built-in corpus run through `svdx prepare` once per test session."""
    from tf_svdx import config as config_lib
    from tf_svdx.data.prepare import prepare
    out = tmp_path_factory.mktemp("tiny_prepared")
    prepare(config_lib.load(None, [f"prepare.corpus={tiny_corpus}", f"prepare.out={out}"]),
            progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_detector_run(tiny_prepared, tmp_path_factory) -> Path:
    """A width-0.125 detector trained for a few updates on the tiny corpus (a run folder)."""
    from tf_svdx import config as config_lib
    from tf_svdx.train.detector import train_detector
    out = tmp_path_factory.mktemp("detector")
    cfg = config_lib.load(None, [f"train_detector.prepared={tiny_prepared}",
                                 f"train_detector.out={out}", "detector.width=0.125",
                                 "pipeline.batch_size=8", "train_detector.steps=10",
                                 "train_detector.eval_every=10"])
    train_detector(cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_gan_run(tiny_prepared, tmp_path_factory) -> Path:
    """A width-0.125 generator trained for a few updates on the tiny corpus (a run folder)."""
    from tf_svdx import config as config_lib
    from tf_svdx.train.wgan_gp import train_gan
    out = tmp_path_factory.mktemp("gan")
    cfg = config_lib.load(None, [f"train_gan.prepared={tiny_prepared}", f"train_gan.out={out}",
                                 "gan.width=0.125", "train_gan.batch_size=8",
                                 "train_gan.n_critic=2", "train_gan.steps=6",
                                 "train_gan.preset=wgan-gp", "train_gan.image_every=100"])
    train_gan(cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_exports(tiny_detector_run, tiny_gan_run, tiny_prepared, tmp_path_factory):
    """Every model exported once per session from the tiny runs: (config, root, {name: folder})."""
    from tf_svdx import config as config_lib
    from tf_svdx.export import export
    tmp = tmp_path_factory.mktemp("export")
    cfg = config_lib.load(None, [
        f"explain.detector={tiny_detector_run}", f"explain.generator={tiny_gan_run}",
        f"explain.prepared={tiny_prepared}", f"explain.out={tmp / 'explain'}",
        f"export.out={tmp / 'saved_models'}", "explain.reference_n=10",
        "explain.reference_hop=25"])
    return cfg, tmp / "saved_models", export(cfg, progress=False)
