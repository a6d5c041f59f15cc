"""The graph contract, written once and torch-free: what ``export/`` writes and ``server/`` reads.

``metadata`` (the ``segformer.*`` keys), ``graph`` (the serving wrapper: uint8 NHWC in, mask out),
``upsample`` (bilinear + argmax nodes), ``foreign`` (wrapping a foreign SegFormer ONNX), ``spec`` (the
server's parsed view) and ``labels`` (built-in class names and palettes). Only ``onnx`` and ``numpy``.
"""
