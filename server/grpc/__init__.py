"""gRPC transport: ``segformer.v1.SegmentationService`` plus health and reflection (see docs/grpc.md).

Importing ``server.grpc`` (or the generated ``server.grpc.gen``, as the client does) stays light: the
servicer and the data plane are only imported when a server is built (``server.grpc.server.GrpcServer``).
"""
