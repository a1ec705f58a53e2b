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
