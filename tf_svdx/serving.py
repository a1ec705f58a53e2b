"""A small in-process TF-Serving stand-in: the gRPC `PredictionService.Predict` over the exported
SavedModels, for tests and local development where the `tensorflow_model_server` binary is not
available. It speaks the real protocol (tensorflow-serving-api's PredictRequest/PredictResponse),
so a client written against it talks to the stock server unchanged.

It loads each `<root>/<name>/<highest version>` with `tf.saved_model.load` only: no Keras and no
tf_svdx code runs in the request path, exactly as in TF-Serving. Errors map to gRPC status codes
the way TF-Serving maps them: bad inputs → INVALID_ARGUMENT, unknown model/signature → NOT_FOUND.
"""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def latest_versions(root: str | Path) -> dict[str, Path]:
    out = {}
    for folder in sorted(Path(root).iterdir()):
        versions = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] \
            if folder.is_dir() else []
        if versions:
            out[folder.name] = max(versions, key=lambda p: int(p.name))
    return out


def error_summary(message: str) -> str:
    """The line of a TF error that says what is wrong (not "Graph execution error:", node
    names or stack-trace markers)."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or ["invalid argument"])[0]


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, root: str | Path):
        self.models = {name: (int(path.name), tf.saved_model.load(str(path)))
                       for name, path in latest_versions(root).items()}

    def Predict(self, request, context):  # noqa: N802 (the gRPC method name)
        name = request.model_spec.name
        if name not in self.models:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found: {name}")
        version, model = self.models[name]
        key = request.model_spec.signature_name or "serving_default"
        if key not in model.signatures:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"Serving signature key \"{key}\" not found")
        fn = model.signatures[key]
        specs = fn.structured_input_signature[1]
        missing = sorted(set(specs) - set(request.inputs))
        extra = sorted(set(request.inputs) - set(specs))
        if missing or extra:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"inputs must be {sorted(specs)}; missing {missing}, unknown {extra}")
        try:
            inputs = {}
            for k, proto in request.inputs.items():
                value = tf.constant(tf.make_ndarray(proto))
                spec = specs[k]
                if value.dtype != spec.dtype:
                    raise ValueError(f"input {k}: expects {spec.dtype.name}, got "
                                     f"{value.dtype.name}")
                if not spec.shape.is_compatible_with(value.shape):
                    raise ValueError(f"input {k}: expects shape {spec.shape}, got {value.shape}")
                inputs[k] = value
            outputs = fn(**inputs)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          error_summary(getattr(e, "message", None) or str(e)))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.signature_name = key
        response.model_spec.version.value = version
        for k, v in outputs.items():
            response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
        return response


def serve(root: str | Path, port: int = 0, host: str = "127.0.0.1",
          workers: int = 2) -> tuple[grpc.Server, int]:
    """Start a gRPC server for every model under root; returns (server, bound port)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", 256 << 20),
                                  ("grpc.max_send_message_length", 256 << 20)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(root), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound
