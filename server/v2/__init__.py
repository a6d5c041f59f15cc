"""The Open Inference Protocol (KServe v2), transport-neutral: tensors in, data plane calls, tensors out.

``server/rest/v2.py`` (REST ``/v2``) and ``server/grpc/inference.py`` (``inference.GRPCInferenceService``)
translate their wire formats to ``tensors.InferRequest`` and back; ``service.V2Service`` does the rest
through ``DataPlane.segment``, one call per element, so elements batch with every other request.
"""
