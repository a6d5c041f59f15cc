"""segformer-serve: ONNX Runtime session pool, dynamic batcher, REST and gRPC transports (no torch)."""
