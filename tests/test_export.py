"""The TF-Serving contract: versioned atomic exports, a fresh process without Keras/tfio/tfp/tf_svdx
loads and calls every signature with the live models' results, saved_model_cli lists them,
models.config parses, a gRPC PredictRequest per signature is answered, bad input is refused."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf

from tf_svdx import config as config_lib
from tf_svdx import features
from tf_svdx.audio.auralise import auralise
from tf_svdx.data.pipeline import Prepared
from tf_svdx.evaluation import TrainedDetector
from tf_svdx.explain import Explainer, frechet_1d, frechet_report, scan_reference
from tf_svdx.explain.job import load_generator
from tf_svdx.export import export
from tf_svdx.models import LAYER_NAMES, feature_model, predict_track

REPO = Path(__file__).parents[1]
SIGNATURES = {"svd_detector": {"serving_default", "features", "predict_waveform"},
              "svd_generator": {"serving_default", "auralise"},
              "svd_explainer": {"serving_default", "from_seeds"},
              "svd_fid": {"serving_default", "score_activations"}}


def _overrides(det, gan, prepared, tmp):
    return [f"explain.detector={det}", f"explain.generator={gan}",
            f"explain.prepared={prepared}", f"explain.out={tmp / 'explain'}",
            f"export.out={tmp / 'saved_models'}", "explain.reference_n=10",
            "explain.reference_hop=25"]


@pytest.fixture(scope="module")
def exported(tiny_exports):
    return tiny_exports


def _cases(cfg) -> dict:
    """Inputs for every signature and what the live models (not the export code) give."""
    ex = cfg.explain
    det = TrainedDetector.load(ex.detector)
    gen, _ = load_generator(ex.generator)
    rng = np.random.default_rng(0)
    mean = det.standardiser.mean[None, :, None, None]
    std = det.standardiser.std[None, :, None, None]
    log_mel = (rng.normal(size=(4, 80, 115, 1)) * 2 - 6).astype(np.float32)
    x = (log_mel - mean) / std
    logit = det.model(x, training=False).numpy()[:, 0]
    c = {"in/svd_detector/serving_default/log_mel": log_mel,
         "out/svd_detector/serving_default/probability": tf.sigmoid(logit).numpy(),
         "out/svd_detector/serving_default/logit": logit,
         "in/svd_detector/features/log_mel": log_mel}
    for name, value in feature_model(det.model, LAYER_NAMES)(x, training=False).items():
        c[f"out/svd_detector/features/{name}"] = value.numpy()
    wave = (0.3 * np.sin(np.arange(22050 * 3) * 0.05) * rng.uniform(0.5, 1, 22050 * 3)
            ).astype(np.float32)
    pad = np.full((57, 80), np.log(1e-7), np.float32)
    padded = det.standardiser(np.concatenate([pad, features.log_mel(wave).numpy(), pad])).numpy()
    c["in/svd_detector/predict_waveform/waveform"] = wave
    c["out/svd_detector/predict_waveform/frame_probability"] = predict_track(det.dense, padded)

    z = rng.normal(size=(3, 128)).astype(np.float32)
    c["in/svd_generator/serving_default/z"] = z
    c["out/svd_generator/serving_default/log_mel"] = gen(z, training=False).numpy()
    c["in/svd_generator/auralise/z"] = z[:2]
    c["out/svd_generator/auralise/waveform"] = auralise(
        tf.transpose(gen(z[:2], training=False)[..., 0], [0, 2, 1])).numpy()

    explainer = Explainer(det.model, det.standardiser.mean, det.standardiser.std, gen,
                          trajectories=False)
    directions = np.array(["maximise", "minimise", "maximise"])
    sign = tf.constant([1.0, -1.0, 1.0])
    lr, lam = np.array([0.1, 0.05, 0.01], np.float32), np.array([0.01, 0.1, 0.0], np.float32)
    seeds = np.array([0, 5, 7], np.int64)
    for signature, z0 in (("serving_default", z), ("from_seeds",
                                                   explainer.initial(seeds, cfg.seed).numpy())):
        out = explainer.run(tf.constant(z0), sign, tf.constant(lr), tf.constant(lam),
                            tf.constant([4]))
        prefix = f"svd_explainer/{signature}"
        c.update({f"in/{prefix}/direction": directions, f"in/{prefix}/lr": lr,
                  f"in/{prefix}/lam": lam, f"in/{prefix}/steps": np.int32(4),
                  f"out/{prefix}/log_mel": out["log_mel"].numpy()[0],
                  f"out/{prefix}/activation": out["activation"].numpy()[0],
                  f"out/{prefix}/z": out["z"].numpy()[0]})
    c["in/svd_explainer/serving_default/z0"] = z
    c["in/svd_explainer/from_seeds/seed"] = seeds

    ref = scan_reference(det, Prepared(ex.prepared), target=ex.layer, layer=ex.fid_layer,
                         n=ex.reference_n, hop=ex.reference_hop)
    batch = (rng.normal(size=(12, 80, 115, 1)) * 2 - 6).astype(np.float32)
    acts = feature_model(det.model, ["fc9", "fc8"])((batch - mean) / std, training=False)
    target, layer = acts["fc9"].numpy()[:, 0], acts["fc8"].numpy()
    fid_1d = [frechet_1d(target, ref.for_direction(d)[0]) for d in ("maximise", "minimise")]
    fid_layer = [frechet_report(layer, ref.for_direction(d)[1])["value"]
                 for d in ("maximise", "minimise")]
    c["in/svd_fid/serving_default/log_mel"] = batch
    c["in/svd_fid/score_activations/target_activation"] = target
    c["in/svd_fid/score_activations/layer_activation"] = layer
    for signature in ("serving_default", "score_activations"):
        c[f"out/svd_fid/{signature}/fid_1d"] = np.array(fid_1d)
        c[f"out/svd_fid/{signature}/fid_layer"] = np.array(fid_layer)
    return c


@pytest.fixture(scope="module")
def cases(exported, tmp_path_factory):
    cfg, _, _ = exported
    path = tmp_path_factory.mktemp("cases") / "cases.npz"
    c = _cases(cfg)
    np.savez(path, **c)
    return path, c


def _site_without_blocked(folder: Path) -> Path:
    """A site-packages of links to every installed package but Keras, tfio, tfp and tf_svdx
    (whose editable install is a .pth hook: no .pth files are linked)."""
    import sysconfig
    blocked = ("keras", "tf_keras", "tensorflow_io", "tensorflow-io", "tensorflow_probability",
               "tf_svdx", "__editable__")
    site = Path(sysconfig.get_paths()["purelib"])
    folder.mkdir()
    for entry in site.iterdir():
        if entry.suffix == ".pth" or entry.name.lower().startswith(blocked):
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


def test_fresh_process_without_keras_matches_the_live_models(exported, cases, tmp_path):
    import os
    _, root, _ = exported
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(_site_without_blocked(tmp_path / "site"))
    proc = subprocess.run([sys.executable, "-S", str(REPO / "tests" / "serving_contract.py"),
                           str(root), str(cases[0])], capture_output=True, text=True,
                          timeout=600, cwd="/", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert not [line for line in lines if not line.startswith(("ok", "checked"))], lines
    expected = sum(1 for k in cases[1] if k.startswith("out/"))
    assert lines[-1] == f"checked {expected} outputs"


def test_versions_extras_and_models_config(exported, tiny_detector_run, tiny_gan_run,
                                           tiny_prepared, tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    cfg, root, written = exported
    for name, folder in written.items():
        assert folder == root / name / "1"
        for extra in ("config.json", "data_fingerprint.json", "metrics.json"):
            assert (folder / "assets.extra" / extra).exists()
    parsed = text_format.Parse((root / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    assert sorted(c.name for c in parsed.model_config_list.config) == sorted(SIGNATURES)
    assert all(c.model_platform == "tensorflow" for c in parsed.model_config_list.config)
    # the next export is version 2, the first stays untouched
    cfg2 = config_lib.load(None, _overrides(tiny_detector_run, tiny_gan_run, tiny_prepared,
                                            tmp_path) + ["export.models=svd_detector"])
    first = export(cfg2, progress=False)["svd_detector"]
    second = export(cfg2, progress=False)["svd_detector"]
    assert (first.name, second.name) == ("1", "2")


def test_saved_model_cli_lists_the_documented_signatures(exported):
    _, root, _ = exported
    cli = Path(sys.executable).parent / "saved_model_cli"
    for name, signatures in SIGNATURES.items():
        proc = subprocess.run([str(cli), "show", "--dir", str(root / name / "1"), "--all"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        for signature in signatures:
            assert f"signature_def['{signature}']" in proc.stdout, (name, signature)
    proc = subprocess.run([str(cli), "show", "--dir", str(root / "svd_detector" / "1"),
                           "--tag_set", "serve", "--signature_def", "serving_default"],
                          capture_output=True, text=True, timeout=300)
    assert "dtype: DT_FLOAT" in proc.stdout and "shape: (-1, 80, 115, 1)" in proc.stdout
    assert "outputs['probability']" in proc.stdout and "outputs['logit']" in proc.stdout


@pytest.fixture(scope="module")
def grpc_stub(exported):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from tf_svdx.serving import serve
    _, root, _ = exported
    server, port = serve(root, port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()
    server.stop(0)


def _request(model, signature, inputs):
    from tensorflow_serving.apis import predict_pb2
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for k, v in inputs.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    return request


def test_grpc_predict_answers_every_signature(grpc_stub, cases):
    c = cases[1]
    for model, signatures in SIGNATURES.items():
        for signature in signatures:
            prefix = f"in/{model}/{signature}/"
            inputs = {k[len(prefix):]: c[k] for k in c if k.startswith(prefix)}
            response = grpc_stub.Predict(_request(model, signature, inputs), timeout=300)
            assert response.model_spec.version.value == 1
            for name, proto in response.outputs.items():
                np.testing.assert_allclose(tf.make_ndarray(proto),
                                           c[f"out/{model}/{signature}/{name}"], atol=1e-5,
                                           err_msg=f"{model}/{signature}/{name}")


@pytest.mark.parametrize("model, signature, inputs, message", [
    ("svd_detector", "serving_default", {"log_mel": np.zeros((2, 80, 115), np.float32)},
     "shape"),
    ("svd_detector", "serving_default", {"log_mel": np.zeros((2, 80, 114, 1), np.float32)},
     "shape"),
    ("svd_detector", "serving_default", {"log_mel": np.zeros((2, 80, 115, 1), np.float64)},
     "float"),
    ("svd_detector", "serving_default", {"log_mel": np.full((1, 80, 115, 1), np.nan,
                                                            np.float32)}, "NaN"),
    ("svd_detector", "predict_waveform", {"waveform": np.zeros(100, np.float32)}, "shorter"),
    ("svd_generator", "serving_default", {"z": np.zeros((2, 64), np.float32)}, "shape"),
    ("svd_explainer", "serving_default", {"z0": np.zeros((1, 128), np.float32),
                                          "direction": np.array(["up"]),
                                          "lr": np.float32([0.1]), "lam": np.float32([0.1]),
                                          "steps": np.int32(3)}, "maximise or minimise"),
    ("svd_fid", "score_activations", {"target_activation": np.float32([1.0]),
                                      "layer_activation": np.zeros((1, 8), np.float32)},
     "at least 2"),
])
def test_bad_input_is_invalid_argument(grpc_stub, model, signature, inputs, message):
    with pytest.raises(grpc.RpcError) as info:
        grpc_stub.Predict(_request(model, signature, inputs), timeout=300)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details(), info.value.details()


def test_a_killed_export_never_leaves_a_version(exported, tmp_path):
    """SIGKILL while the SavedModel is being written: the folder holds no new integer version
    (a polling server sees nothing), and the next export cleans up and writes version 1."""
    cfg, _, _ = exported
    args = [f"--config.{o}" for o in _overrides(cfg.explain.detector, cfg.explain.generator,
                                                cfg.explain.prepared, tmp_path)]
    proc = subprocess.Popen([sys.executable, "-m", "tf_svdx.cli", "export", "--noprogress",
                             "--config.export.models=svd_detector", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "saved_models" / "svd_detector"
    deadline = time.time() + 300
    while time.time() < deadline and not list(folder.glob(".tmp-*/*")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(folder.glob(".tmp-*")), "the kill did not land mid-export"
    assert not [p for p in folder.iterdir() if p.name.isdigit()]
    proc = subprocess.run([sys.executable, "-m", "tf_svdx.cli", "export", "--noprogress",
                           "--config.export.models=svd_detector", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in folder.iterdir()) == ["1"]
