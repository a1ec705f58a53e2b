#!/usr/bin/env python
"""A TF-Serving client for the svdx exports (svd_detector, svd_generator, svd_explainer, svd_fid):
one Predict request per call, as REST JSON (row form `instances` or columnar form `inputs`) or as
a gRPC PredictRequest, with example inputs built per signature.

    tools/serving_client.py --rest=localhost:8501 --model=svd_detector --form=instances
    tools/serving_client.py --grpc=localhost:8500 --model=svd_explainer --signature=from_seeds
    tools/serving_client.py --rest=localhost:8501 --model=svd_detector \\
        --signature=predict_waveform --input=song.wav
    tools/serving_client.py --model=svd_generator --write-json=body.json   # then:
    curl -s -X POST localhost:8501/v1/models/svd_generator:predict -d @body.json

REST uses only the standard library (urllib, json); gRPC uses tensorflow-serving-api (and
TensorFlow for the tensor protos, imported only when gRPC is used). Nothing here imports Keras or
tf_svdx: this is what a client of the stock `tensorflow_model_server` would run.

Function-level API: example_inputs(model, signature, n), rest_body(inputs, form, signature),
rest_predict(target, model, signature, inputs, form), grpc_predict(target, model, signature,
inputs), load_inputs(spec, model, signature), read_wav(path); errors raise ServingError.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
import wave
from pathlib import Path

import numpy as np

SAMPLE_RATE = 22050
N_MELS, EXCERPT_FRAMES = 80, 115
Z_DIM = 128      # the generator's latent size
LAYER_DIM = 64   # fc8 of the full-width detector (svd_fid's default layer); tiny models differ
DETECTOR_LAYERS = ("conv1", "conv2", "pool1", "conv3", "conv4", "pool2", "fc7", "fc8", "fc9")

_LOG_MEL = ("float32", (-1, N_MELS, EXCERPT_FRAMES, 1))
_EXPLAIN_COMMON = {"direction": ("string", (-1,)), "lr": ("float32", (-1,)),
                   "lam": ("float32", (-1,)), "steps": ("int32", ())}
_EXPLAIN_OUT = ("log_mel", "activation", "z")
_FID_OUT = ("fid_1d", "fid_layer")

# model → signature → {"inputs": {name: (dtype, shape)}, "outputs": names}; -1 is the batch
# dimension, "Z" the latent size and "D" the FID layer's width (both read from the server's
# metadata when it answers, else --z-dim / --layer-dim, else the full-size defaults).
SIGNATURES = {
    "svd_detector": {
        "serving_default": {"inputs": {"log_mel": _LOG_MEL}, "outputs": ("probability", "logit")},
        "features": {"inputs": {"log_mel": _LOG_MEL}, "outputs": DETECTOR_LAYERS},
        "predict_waveform": {"inputs": {"waveform": ("float32", (-1,))},
                             "outputs": ("frame_probability",)},
    },
    "svd_generator": {
        "serving_default": {"inputs": {"z": ("float32", (-1, "Z"))}, "outputs": ("log_mel",)},
        "auralise": {"inputs": {"z": ("float32", (-1, "Z"))}, "outputs": ("waveform",)},
    },
    "svd_explainer": {
        "serving_default": {"inputs": {"z0": ("float32", (-1, "Z")), **_EXPLAIN_COMMON},
                            "outputs": _EXPLAIN_OUT},
        "from_seeds": {"inputs": {"seed": ("int64", (-1,)), **_EXPLAIN_COMMON},
                       "outputs": _EXPLAIN_OUT},
    },
    "svd_fid": {
        "serving_default": {"inputs": {"log_mel": _LOG_MEL}, "outputs": _FID_OUT},
        "score_activations": {"inputs": {"target_activation": ("float32", (-1,)),
                                         "layer_activation": ("float32", (-1, "D"))},
                              "outputs": _FID_OUT},
    },
}

FORMS = ("instances", "inputs")
EXPLAINER_ROW_FORM = (
    "svd_explainer takes `steps` as a scalar (one step count for the whole batch); the REST "
    "row form (`instances`) batches every input along dimension 0, so a scalar cannot be "
    "written there: use --form=inputs (the columnar form), or gRPC")


class ServingError(Exception):
    """A request that the server (or this client) refused; `code` is the HTTP status or the gRPC
    status name (or "client" for a refusal before sending)."""

    def __init__(self, code, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


# ---------------------------------------------------------------------------- example inputs

def tone(seconds: float = 3.0, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A voice-like synthetic signal: a 220 Hz harmonic tone with 5.5 Hz vibrato, a slow
    loudness envelope and a little noise, float32 mono in [-1, 1]."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    phase = 2 * np.pi * np.cumsum(220.0 * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * t))) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 9))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 0.25 * t) ** 2
    x += 0.01 * np.random.default_rng(seed).normal(size=len(t))
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def example_inputs(model: str, signature: str = "serving_default", n: int = 2, *,
                   seed: int = 0, steps: int = 10, seconds: float = 3.0, z_dim: int = Z_DIM,
                   layer_dim: int = LAYER_DIM, waveform: np.ndarray | None = None) -> dict:
    """Sensible inputs for one signature, numpy arrays of the signature's dtypes: log-mel
    excerpts ~ N(-6, 2²) [n, 80, 115, 1]; z ~ N(0, 1) [n, z_dim]; the explainer's per-row
    direction (maximise, minimise, …), lr 0.05, λ 0.1, seeds seed…seed+n-1 and one `steps`;
    svd_fid at least 2 rows; predict_waveform `waveform` (default: a synthetic tone)."""
    spec = _spec(model, signature)
    rng = np.random.default_rng(seed)
    if model == "svd_fid":
        n = max(n, 2)  # a distance needs a covariance: at least 2 rows
    out = {}
    for name, (dtype, _) in spec["inputs"].items():
        if name == "log_mel":
            value = rng.normal(-6.0, 2.0, (n, N_MELS, EXCERPT_FRAMES, 1))
        elif name == "waveform":
            value = tone(seconds, seed=seed) if waveform is None else waveform
        elif name in ("z", "z0"):
            value = rng.normal(size=(n, z_dim))
        elif name == "direction":
            value = np.array([("maximise", "minimise")[i % 2] for i in range(n)])
        elif name == "lr":
            value = np.full(n, 0.05)
        elif name == "lam":
            value = np.full(n, 0.1)
        elif name == "steps":
            value = np.int32(steps)
        elif name == "seed":
            value = seed + np.arange(n)
        elif name == "target_activation":
            value = rng.normal(size=n)
        elif name == "layer_activation":
            value = np.abs(rng.normal(size=(n, layer_dim)))
        else:  # pragma: no cover (the table names every input)
            raise ValueError(name)
        out[name] = _as_dtype(value, dtype)
    return out


def _spec(model: str, signature: str) -> dict:
    try:
        return SIGNATURES[model][signature]
    except KeyError:
        known = ", ".join(f"{m}/{s}" for m in SIGNATURES for s in SIGNATURES[m])
        raise ServingError("client", f"no example inputs for {model}/{signature} (known: "
                                     f"{known}); pass --input=FILE.npz") from None


def _as_dtype(value, dtype: str) -> np.ndarray:
    if dtype == "string":
        value = np.asarray(value)
        return value if value.dtype.kind in "USO" else value.astype(str)
    return np.asarray(value).astype(dtype)


def read_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A PCM WAV file (8/16/24/32-bit, any channel count) read with the stdlib `wave` module →
    float32 mono at `sample_rate` (other rates are resampled linearly, with a note on stderr)."""
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
            raw = f.readframes(f.getnframes())
    except (wave.Error, EOFError) as e:
        raise ServingError("client", f"{path}: not a PCM WAV file the stdlib can read ({e}); "
                                     "convert it, e.g. ffmpeg -i IN -ac 1 -ar 22050 OUT.wav")
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 2 ** 15
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / 2 ** 23
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / 2 ** 31
    else:
        raise ServingError("client", f"{path}: {8 * width}-bit samples are not supported")
    x = x.reshape(-1, channels).mean(axis=1)
    if rate != sample_rate:
        print(f"note: {path}: {rate} Hz resampled linearly to {sample_rate} Hz", file=sys.stderr)
        t = np.arange(int(len(x) * sample_rate / rate)) * (rate / sample_rate)
        x = np.interp(t, np.arange(len(x)), x)
    return x.astype(np.float32)


def load_inputs(spec: str, model: str, signature: str, **kwargs) -> dict:
    """--input: "random" (example_inputs), FILE.npz (one array per input name, or keys
    "in/<model>/<signature>/<name>" as tests/test_export.py writes them) or AUDIO.wav (the
    `waveform` of svd_detector/predict_waveform)."""
    if spec == "random":
        return example_inputs(model, signature, **kwargs)
    path = Path(spec)
    if not path.is_file():
        raise ServingError("client", f"--input: {spec}: no such file (or say 'random')")
    if path.suffix.lower() == ".wav":
        if (model, signature) != ("svd_detector", "predict_waveform"):
            raise ServingError("client", "a WAV input is for --model=svd_detector "
                                         "--signature=predict_waveform only")
        return {"waveform": read_wav(path)}
    if path.suffix.lower() != ".npz":
        raise ServingError("client", f"--input: {spec}: expected random, FILE.npz or FILE.wav")
    prefix = f"in/{model}/{signature}/"
    with np.load(path, allow_pickle=False) as data:
        arrays = {k[len(prefix):] if k.startswith(prefix) else k: data[k] for k in data.files
                  if k.startswith(prefix) or "/" not in k}
    known = SIGNATURES.get(model, {}).get(signature)
    if known:
        missing = sorted(set(known["inputs"]) - set(arrays))
        extra = sorted(set(arrays) - set(known["inputs"]))
        if missing or extra:
            raise ServingError("client", f"{spec}: {model}/{signature} takes "
                                         f"{sorted(known['inputs'])}; missing {missing}, "
                                         f"unknown {extra}")
        arrays = {k: _as_dtype(v, known["inputs"][k][0]) for k, v in arrays.items()}
    return arrays


# ----------------------------------------------------------------------------------- JSON

_SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _leaves(arr: np.ndarray) -> list[str]:
    """Every element of `arr` (C order) as JSON text. Floats use numpy's shortest round-trip
    representation of their own precision (float32 0.1 → "0.1", not 0.10000000149011612), which
    TF-Serving parses back to the same float32; NaN/±Inf as TF-Serving's NaN/Infinity tokens.
    Strings are JSON strings; bytes that are not UTF-8 become {"b64": …}."""
    flat = arr.ravel()
    kind = arr.dtype.kind
    if kind == "f":
        if arr.dtype.itemsize < 4:
            flat = flat.astype(np.float32)
        text = flat.astype(str).tolist()
        if not np.all(np.isfinite(flat)):
            text = [_SPECIAL.get(t, t) for t in text]
        return text
    if kind in "iu":
        return flat.astype(str).tolist()
    if kind == "b":
        return ["true" if v else "false" for v in flat.tolist()]
    if kind in "USO":
        out = []
        for v in flat.tolist():
            if isinstance(v, bytes):
                try:
                    v = v.decode("utf-8")
                except UnicodeDecodeError:
                    out.append(json.dumps({"b64": base64.b64encode(v).decode("ascii")}))
                    continue
            out.append(json.dumps(str(v)))
        return out
    raise ServingError("client", f"dtype {arr.dtype} has no TF-Serving JSON encoding")


def _nest(items: list[str], shape) -> list[str]:
    """Group flat element texts into nested JSON lists, innermost axis first."""
    for d in reversed(shape):
        items = ["[" + ",".join(items[i:i + d]) + "]" for i in range(0, len(items), d)]
    return items


def json_tensor(arr) -> str:
    """One tensor in its natural nested JSON form (a scalar is a bare value)."""
    arr = np.asarray(arr)
    if arr.size == 0:
        return json.dumps(arr.tolist())
    return _nest(_leaves(arr), arr.shape)[0] if arr.ndim else _leaves(arr)[0]


def json_rows(arr) -> list[str]:
    """One JSON text per entry along dimension 0."""
    arr = np.asarray(arr)
    if arr.size == 0:
        return [json.dumps(row) for row in arr.tolist()]
    return _nest(_leaves(arr), arr.shape[1:])


def check_row_form(inputs: dict, model: str | None = None) -> int:
    """The batch size of an `instances` request, or ServingError if there is none."""
    if model == "svd_explainer":
        raise ServingError("client", EXPLAINER_ROW_FORM)
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    scalars = sorted(k for k, v in arrays.items() if v.ndim == 0)
    if scalars:
        raise ServingError("client", f"inputs {scalars} are scalars: the REST row form "
                                     "(`instances`) needs a batch dimension on every input; "
                                     "use --form=inputs")
    sizes = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ServingError("client", f"the REST row form (`instances`) needs every input to "
                                     f"share dimension 0, got {sizes}; use --form=inputs")
    n = next(iter(sizes.values()))
    if n == 0:
        raise ServingError("client", "the REST row form (`instances`) needs at least one row")
    return n


def rest_body(inputs: dict, form: str = "inputs", signature: str = "serving_default",
              model: str | None = None) -> str:
    """The JSON body of a TF-Serving REST predict request:
    {"signature_name": S, "instances": [{name: row, …}, …]}  (row form: each named input split
                                                              along dimension 0), or
    {"signature_name": S, "inputs": {name: tensor, …}}       (columnar form: whole tensors).
    `model` only serves the svd_explainer check (its scalar `steps` has no row form)."""
    if form not in FORMS:
        raise ServingError("client", f"form must be one of {FORMS}, got {form!r}")
    head = '{"signature_name":' + json.dumps(signature)
    if form == "inputs":
        parts = [json.dumps(k) + ":" + json_tensor(v) for k, v in inputs.items()]
        return head + ',"inputs":{' + ",".join(parts) + "}}"
    n = check_row_form(inputs, model)
    columns = {json.dumps(k): json_rows(v) for k, v in inputs.items()}
    rows = ["{" + ",".join(f"{k}:{col[i]}" for k, col in columns.items()) + "}"
            for i in range(n)]
    return head + ',"instances":[' + ",".join(rows) + "]}"


# ----------------------------------------------------------------------------------- REST

def _base_url(target: str) -> str:
    return target.rstrip("/") if "://" in target else f"http://{target}"


def _model_url(target: str, model: str, version: int | None = None) -> str:
    url = f"{_base_url(target)}/v1/models/{model}"
    return f"{url}/versions/{int(version)}" if version is not None else url


def _http(url: str, body: bytes | None = None, timeout: float = 300.0) -> dict:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        raw = e.read().decode("utf-8", "replace")
        try:
            message = json.loads(raw)["error"]
        except (ValueError, KeyError, TypeError):
            message = raw.strip() or e.reason
        raise ServingError(f"HTTP {e.code}", str(message)) from None
    except (urllib.error.URLError, OSError) as e:
        raise ServingError("connection", f"{url}: {getattr(e, 'reason', e)}") from None
    return json.loads(text)  # Python's json reads TF-Serving's NaN / Infinity tokens


def parse_rest_response(answer: dict, outputs=()) -> dict:
    """{name: np.ndarray} from {"predictions": …} (row form) or {"outputs": …} (columnar form).
    With one output TF-Serving omits its name: it is taken from `outputs` (the known names)."""
    single = outputs[0] if len(outputs) == 1 else "output"
    if "outputs" in answer:
        value = answer["outputs"]
        if isinstance(value, dict) and not set(value) == {"b64"}:
            return {k: np.asarray(v) for k, v in value.items()}
        return {single: np.asarray(value)}
    if "predictions" in answer:
        rows = answer["predictions"]
        if rows and isinstance(rows[0], dict) and set(rows[0]) != {"b64"}:
            return {k: np.asarray([row[k] for row in rows]) for k in rows[0]}
        return {single: np.asarray(rows)}
    raise ServingError("response", f"neither 'outputs' nor 'predictions' in {list(answer)}")


def rest_predict(target: str, model: str, signature: str, inputs: dict, form: str = "inputs",
                 version: int | None = None, timeout: float = 300.0) -> dict:
    """POST /v1/models/<model>[/versions/<v>]:predict; {output name: np.ndarray}."""
    body = rest_body(inputs, form, signature, model).encode("utf-8")
    answer = _http(_model_url(target, model, version) + ":predict", body, timeout)
    known = SIGNATURES.get(model, {}).get(signature, {}).get("outputs", ())
    return parse_rest_response(answer, known)


def rest_input_shapes(target: str, model: str, signature: str, version=None,
                      timeout: float = 30.0) -> dict:
    """{input name: [dims]} from GET …/metadata (-1 for unknown dimensions)."""
    meta = _http(_model_url(target, model, version) + "/metadata", timeout=timeout)
    sig = meta["metadata"]["signature_def"]["signature_def"][signature]
    return {name: [int(d.get("size", -1)) for d in info.get("tensor_shape", {}).get("dim", [])]
            for name, info in sig["inputs"].items()}


# ----------------------------------------------------------------------------------- gRPC

def _channel(target: str):
    import grpc
    return grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 256 << 20),
                                                  ("grpc.max_receive_message_length", 256 << 20)])


def predict_request(model: str, signature: str, inputs: dict, version: int | None = None):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
    return request


def grpc_predict(target: str, model: str, signature: str, inputs: dict,
                 version: int | None = None, timeout: float = 300.0) -> dict:
    """PredictionService.Predict over gRPC; {output name: np.ndarray}. RPC errors raise
    ServingError with the gRPC status name as code."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    request = predict_request(model, signature, inputs, version)
    with _channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            raise ServingError(e.code().name, e.details() or str(e)) from None
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def grpc_input_shapes(target: str, model: str, signature: str, version=None,
                      timeout: float = 30.0) -> dict:
    """{input name: [dims]} from PredictionService.GetModelMetadata (signature_def)."""
    import grpc
    from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = int(version)
    request.metadata_field.append("signature_def")
    with _channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.GetModelMetadata(request, timeout=timeout)
        except grpc.RpcError as e:
            raise ServingError(e.code().name, e.details() or str(e)) from None
    defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(defs)
    sig = defs.signature_def[signature]
    return {name: [d.size for d in info.tensor_shape.dim] for name, info in sig.inputs.items()}


def dims_from_shapes(shapes: dict) -> dict:
    """example_inputs keyword arguments (z_dim, layer_dim) read off a signature's input shapes."""
    dims = {}
    for name, key in (("z", "z_dim"), ("z0", "z_dim"), ("layer_activation", "layer_dim")):
        shape = shapes.get(name)
        if shape and len(shape) == 2 and shape[1] and shape[1] > 0:
            dims[key] = int(shape[1])
    return dims


# ------------------------------------------------------------------------------------ CLI

def describe(outputs: dict, values: int = 5) -> str:
    """One line per output: name, shape, dtype, the first few values (and the range)."""
    lines = []
    for name in sorted(outputs):
        a = np.asarray(outputs[name])
        flat = a.ravel()
        if a.dtype.kind in "fiu":
            shown = ", ".join(f"{v:.6g}" for v in flat[:values].tolist())
            extra = (f" … (min {flat.min():.4g}, mean {flat.astype(np.float64).mean():.4g}, "
                     f"max {flat.max():.4g})" if flat.size > values else "")
        else:
            shown, extra = ", ".join(repr(v) for v in flat[:values].tolist()), \
                (" …" if flat.size > values else "")
        lines.append(f"  {name:<18} {str(tuple(a.shape)):<20} {str(a.dtype):<8} "
                     f"[{shown}]{extra}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="serving_client.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0],
        epilog="""request forms:
  --form=inputs     REST columnar form {"signature_name": S, "inputs": {name: tensor}}: every
                    input whole, any shapes (scalars included). Works for every signature.
  --form=instances  REST row form {"signature_name": S, "instances": [{name: row}, …]}: every
                    input is split along dimension 0, so all inputs must share the batch size.
                    Not for svd_explainer: its `steps` is a scalar (one count for the whole
                    batch), which the row form cannot express; use --form=inputs or gRPC.
                    For predict_waveform each instance is one sample (valid, but bulky).
  --grpc            a PredictRequest with TensorProtos (exact dtypes: float32, int32 steps,
                    int64 seed, string direction).

signatures and their example inputs (--input=random):
  svd_detector   serving_default, features   log_mel [N,80,115,1] ~ N(-6, 2²)
                 predict_waveform            waveform [samples], a --seconds synthetic tone
                                             (or --input=AUDIO.wav, PCM, read with `wave`)
  svd_generator  serving_default, auralise   z [N,128] ~ N(0,1)
  svd_explainer  serving_default, from_seeds z0 [N,128] or seed int64 [N]; direction
                 (maximise/minimise alternating), lr 0.05, lam 0.1, steps (--steps) scalar
  svd_fid        serving_default             log_mel [N≥2, 80,115,1]
                 score_activations           target_activation [N], layer_activation [N,D]
  Z and D are read from the server's model metadata when it answers, else --z-dim/--layer-dim.
  --input=FILE.npz: one array per input name (or keys in/<model>/<signature>/<name>).

exit status: 0 on success; 1 when the server (or this client) refuses the request: the
server's error message is printed (REST: the body's "error"; gRPC: the status details).""")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--rest", metavar="HOST:PORT", help="TF-Serving REST endpoint (8501)")
    where.add_argument("--grpc", metavar="HOST:PORT", help="TF-Serving gRPC endpoint (8500)")
    p.add_argument("--model", required=True, help="svd_detector, svd_generator, svd_explainer "
                                                  "or svd_fid (or any model, with an .npz)")
    p.add_argument("--signature", default="serving_default")
    p.add_argument("--version", type=int, help="a model version (default: the latest)")
    p.add_argument("--form", choices=FORMS, default="inputs", help="REST body form")
    p.add_argument("--input", default="random", help="random | FILE.npz | AUDIO.wav")
    p.add_argument("--n", type=int, default=2, help="rows of random input (svd_fid: ≥ 2)")
    p.add_argument("--steps", type=int, default=10, help="svd_explainer steps")
    p.add_argument("--seconds", type=float, default=3.0, help="synthetic waveform length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--z-dim", type=int, help=f"latent size (default: metadata, else {Z_DIM})")
    p.add_argument("--layer-dim", type=int,
                   help=f"svd_fid layer width D (default: metadata, else {LAYER_DIM})")
    p.add_argument("--write-json", metavar="FILE",
                   help="write the REST request body to FILE instead of sending anything")
    p.add_argument("--save-outputs", metavar="FILE.npz", help="also save the outputs")
    p.add_argument("--values", type=int, default=5, help="values printed per output")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    return p


def _resolve_dims(args) -> dict:
    dims = {}
    needs = args.input == "random" and args.model in ("svd_generator", "svd_explainer",
                                                       "svd_fid")
    if needs and not args.write_json and (args.rest or args.grpc) and \
            (args.z_dim is None or args.layer_dim is None):
        try:
            if args.rest:
                shapes = rest_input_shapes(args.rest, args.model, args.signature, args.version)
            else:
                shapes = grpc_input_shapes(args.grpc, args.model, args.signature, args.version)
            dims = dims_from_shapes(shapes)
        except (ServingError, KeyError, TypeError, ValueError):
            pass  # no metadata (e.g. tf_svdx.serving's stand-in): the defaults below
    if args.z_dim is not None:
        dims["z_dim"] = args.z_dim
    if args.layer_dim is not None:
        dims["layer_dim"] = args.layer_dim
    return dims


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if not (args.rest or args.grpc or args.write_json):
        _parser().error("say where to send: --rest=HOST:PORT or --grpc=HOST:PORT "
                        "(or --write-json=FILE)")
    try:
        if args.form == "instances" and args.model == "svd_explainer" and not args.grpc:
            raise ServingError("client", EXPLAINER_ROW_FORM)
        inputs = load_inputs(args.input, args.model, args.signature, n=args.n, seed=args.seed,
                             steps=args.steps, seconds=args.seconds, **_resolve_dims(args))
        shapes = ", ".join(f"{k} {tuple(np.shape(v))} {np.asarray(v).dtype}"
                           for k, v in inputs.items())
        if args.write_json:
            body = rest_body(inputs, args.form, args.signature, args.model)
            Path(args.write_json).write_text(body, encoding="utf-8")
            url = _model_url(args.rest or "localhost:8501", args.model, args.version)
            print(f"wrote {args.write_json} ({len(body):,} bytes, {args.form} form; {shapes})")
            print(f"send it with: curl -s -X POST {url}:predict -d @{args.write_json}")
            return 0
        via = f"REST {args.form}" if args.rest else "gRPC"
        print(f"{args.model}/{args.signature} via {via} at {args.rest or args.grpc}; "
              f"inputs: {shapes}")
        if args.rest:
            outputs = rest_predict(args.rest, args.model, args.signature, inputs, args.form,
                                   args.version, args.timeout)
        else:
            outputs = grpc_predict(args.grpc, args.model, args.signature, inputs, args.version,
                                   args.timeout)
    except ServingError as e:
        print(f"error: {e.code}: {e.message}", file=sys.stderr)
        return 1
    print(f"outputs ({len(outputs)}):")
    print(describe(outputs, args.values))
    if args.save_outputs:
        np.savez(args.save_outputs, **outputs)
        print(f"saved {args.save_outputs}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
