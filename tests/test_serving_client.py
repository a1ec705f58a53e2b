"""tools/serving_client.py against the exported tiny models: gRPC Predict on every signature via
tf_svdx.serving (the in-process stand-in for tensorflow_model_server), REST bodies in both forms
checked against the TF-Serving REST API (no REST server here), the REST error path against a
canned HTTP server, --write-json, and the CLI in a subprocess."""

import importlib.util
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest


REPO = Path(__file__).parents[1]


def _load_client():
    spec = importlib.util.spec_from_file_location("serving_client",
                                                  REPO / "tools" / "serving_client.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["serving_client"] = module
    spec.loader.exec_module(module)
    return module


client = _load_client()
ALL = [(m, s) for m in client.SIGNATURES for s in client.SIGNATURES[m]]


@pytest.fixture(scope="module")
def served(tiny_exports):
    """Every model of the session's tiny export, served over gRPC."""
    from tf_svdx.serving import serve
    _, root, written = tiny_exports
    server, port = serve(root, port=0)
    yield f"127.0.0.1:{port}", written
    server.stop(0)


def _input_shapes(folder: Path, signature: str) -> dict:
    """The signature's input shapes as TF-Serving's metadata reports them (saved_model.pb)."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    sig = saved.meta_graphs[0].signature_def[signature]
    return {k: [d.size for d in v.tensor_shape.dim] for k, v in sig.inputs.items()}


def _inputs(written, model, signature, n=2):
    dims = client.dims_from_shapes(_input_shapes(written[model], signature))
    return client.example_inputs(model, signature, n, steps=2, seconds=1.0, **dims)


def _expected_shapes(model, signature, inputs, n):
    if model == "svd_detector" and signature == "predict_waveform":
        return {"frame_probability": (1 + (len(inputs["waveform"]) - 1024) // 315,)}
    if model == "svd_detector" and signature == "features":
        return {name: None for name in client.DETECTOR_LAYERS}  # [n, …] each
    if model == "svd_detector":
        return {"probability": (n,), "logit": (n,)}
    if model == "svd_generator" and signature == "auralise":
        return {"waveform": None}
    if model == "svd_generator":
        return {"log_mel": (n, 80, 115, 1)}
    if model == "svd_explainer":
        return {"log_mel": (n, 80, 115, 1), "activation": (n,), "z": (n, client.Z_DIM)}
    return {"fid_1d": (2,), "fid_layer": (2,)}


@pytest.mark.parametrize("model, signature", ALL)
def test_grpc_predict_every_signature(served, model, signature):
    target, written = served
    n = 3
    inputs = _inputs(written, model, signature, n)
    outputs = client.grpc_predict(target, model, signature, inputs, timeout=120)
    expected = _expected_shapes(model, signature, inputs, n)
    assert sorted(outputs) == sorted(expected)
    assert sorted(outputs) == sorted(client.SIGNATURES[model][signature]["outputs"])
    for name, shape in expected.items():
        value = outputs[name]
        assert np.all(np.isfinite(value)), name
        if shape is None:
            assert value.shape[0] == n, (name, value.shape)
        else:
            assert value.shape == shape, (name, value.shape)


@pytest.mark.parametrize("model, signature", ALL)
@pytest.mark.parametrize("form", client.FORMS)
def test_rest_bodies_follow_the_tf_serving_spec_and_round_trip(model, signature, form):
    inputs = client.example_inputs(model, signature, 3, steps=7, seconds=0.2, layer_dim=8)
    if form == "instances" and model == "svd_explainer":
        with pytest.raises(client.ServingError, match="steps.*scalar.*--form=inputs"):
            client.rest_body(inputs, form, signature, model)
        return
    body = json.loads(client.rest_body(inputs, form, signature, model))
    if form == "inputs":
        assert sorted(body) == ["inputs", "signature_name"]
        assert body["signature_name"] == signature
        columns = body["inputs"]
        assert isinstance(columns, dict) and sorted(columns) == sorted(inputs)
    else:
        assert sorted(body) == ["instances", "signature_name"]
        assert body["signature_name"] == signature
        rows = body["instances"]
        n = len(next(iter(inputs.values())))
        assert isinstance(rows, list) and len(rows) == n
        assert all(isinstance(r, dict) and sorted(r) == sorted(inputs) for r in rows)
        columns = {k: [r[k] for r in rows] for k in inputs}
    for name, value in inputs.items():
        decoded = np.asarray(columns[name], dtype=value.dtype)
        assert decoded.shape == value.shape, name
        np.testing.assert_array_equal(decoded, value, err_msg=name)  # exact, float32 included
    if model == "svd_explainer":
        assert columns["steps"] == 7 and isinstance(columns["steps"], int)
        assert columns["direction"] == ["maximise", "minimise", "maximise"]
        assert all(isinstance(s, int) for s in columns.get("seed", []))


def test_json_encoding_details():
    x = np.array([0.1, -2.5, np.nan, np.inf, -np.inf, 1e-8, 3.0], np.float32)
    text = client.json_tensor(x)
    assert text == "[0.1,-2.5,NaN,Infinity,-Infinity,1e-08,3.0]"
    np.testing.assert_array_equal(np.asarray(json.loads(text), np.float32), x)
    assert client.json_tensor(np.int32(4)) == "4"
    assert client.json_tensor(np.array([2 ** 40], np.int64)) == "[1099511627776]"
    assert json.loads(client.json_tensor(np.array([b"\xff\x00"], object))) == [{"b64": "/wA="}]
    assert json.loads(client.json_tensor(np.array(["é"]))) == ["é"]
    assert client.json_tensor(np.zeros((2, 0), np.float32)) == "[[], []]"
    with pytest.raises(client.ServingError, match="share dimension 0"):
        client.rest_body({"a": np.zeros(2), "b": np.zeros(3)}, "instances")
    assert client.parse_rest_response({"predictions": [0.5, 0.25]}, ("p",))["p"].tolist() == \
        [0.5, 0.25]
    rows = client.parse_rest_response({"predictions": [{"a": 1, "b": [1, 2]},
                                                        {"a": 2, "b": [3, 4]}]})
    assert rows["b"].shape == (2, 2) and rows["a"].tolist() == [1, 2]


def test_write_json(tmp_path, capsys):
    path = tmp_path / "body.json"
    assert client.main(["--model=svd_explainer", "--signature=from_seeds", "--n=4",
                        f"--write-json={path}"]) == 0
    body = json.loads(path.read_text())
    assert body["signature_name"] == "from_seeds" and body["inputs"]["seed"] == [0, 1, 2, 3]
    assert f"-d @{path}" in capsys.readouterr().out
    assert client.main(["--model=svd_explainer", "--form=instances",
                        f"--write-json={tmp_path / 'no.json'}"]) == 1
    assert "--form=inputs" in capsys.readouterr().err and not (tmp_path / "no.json").exists()


class _CannedREST(BaseHTTPRequestHandler):
    """Answers :predict the way TF-Serving formats answers; model "broken" gets a 400."""
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, body))
        if "/broken" in self.path:
            return self._send(400, {"error": "log_mel contains NaN or Inf"})
        n = len(body.get("instances") or body["inputs"]["log_mel"])
        p = [0.25 + 0.125 * i for i in range(n)]
        if "instances" in body:
            return self._send(200, {"predictions": [{"probability": v, "logit": -v} for v in p]})
        return self._send(200, {"outputs": {"probability": p, "logit": [-v for v in p]}})

    def do_GET(self):  # noqa: N802
        self._send(404, {"error": "no metadata here"})

    def _send(self, code, answer):
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_rest_cli_against_a_canned_server(capsys):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _CannedREST)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    target = f"127.0.0.1:{httpd.server_address[1]}"
    try:
        for form in client.FORMS:
            assert client.main([f"--rest={target}", "--model=svd_detector", "--n=3",
                                f"--form={form}"]) == 0
            out = capsys.readouterr().out
            assert "probability" in out and "logit" in out and "(3,)" in out
        path, body = _CannedREST.seen[-1]
        assert path == "/v1/models/svd_detector:predict"
        assert body["signature_name"] == "serving_default"
        assert client.main([f"--rest={target}", "--model=broken", "--version=3",
                            "--input=random"]) == 1  # no example inputs for "broken"
        assert "no example inputs" in capsys.readouterr().err
        with pytest.raises(client.ServingError) as info:
            client.rest_predict(target, "broken", "serving_default",
                                client.example_inputs("svd_detector"), version=3)
        assert info.value.code == "HTTP 400" and "NaN" in info.value.message
        assert _CannedREST.seen[-1][0] == "/v1/models/broken/versions/3:predict"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_cli_errors_exit_1_with_the_servers_message(served, tmp_path, capsys):
    target, _ = served
    npz = tmp_path / "bad.npz"
    np.savez(npz, log_mel=np.full((1, 80, 115, 1), np.nan, np.float32))
    assert client.main([f"--grpc={target}", "--model=svd_detector", f"--input={npz}"]) == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "NaN" in err
    assert client.main([f"--grpc={target}", "--model=svd_detector", "--signature=nope",
                        f"--input={npz}"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_cli_subprocess_against_the_grpc_server(served):
    target, _ = served
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "serving_client.py"),
                           f"--grpc={target}", "--model=svd_detector", "--n=3"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "probability" in proc.stdout and "logit" in proc.stdout, proc.stdout
    assert "(3,)" in proc.stdout
