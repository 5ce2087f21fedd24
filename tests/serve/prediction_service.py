"""A second process answering TF Serving's gRPC PredictionService/Predict for an export directory, for
the --tower=grpc:// test where no tensorflow_model_server binary exists. Real gRPC, real
tensorflow_serving protos, the real SavedModels (`<export_dir>/<model>/<version>`, latest when the
request names none); an InvalidArgumentError becomes INVALID_ARGUMENT, as in TF Serving.

    python prediction_service.py EXPORT_DIR PORT
"""

import os
import sys
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, export_dir):
        self.export_dir, self.loaded = export_dir, {}

    def _model(self, name, version):
        base = os.path.join(self.export_dir, name)
        version = version or max(int(v) for v in os.listdir(base) if v.isdigit())
        if (name, version) not in self.loaded:
            self.loaded[(name, version)] = tf.saved_model.load(os.path.join(base, str(version)))
        return self.loaded[(name, version)]

    def Predict(self, request, context):
        spec = request.model_spec
        try:
            model = self._model(spec.name, spec.version.value if spec.HasField("version") else None)
            fn = model.signatures[spec.signature_name or "serving_default"]
            out = fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
        except (OSError, ValueError, KeyError) as err:
            context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except tf.errors.InvalidArgumentError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, err.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(spec)
        for name, value in out.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


def main():
    export_dir, port = sys.argv[1], int(sys.argv[2])
    server = grpc.server(futures.ThreadPoolExecutor(2), options=[("grpc.max_receive_message_length", 64 << 20)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(export_dir), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
