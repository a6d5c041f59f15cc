"""Side-by-side benchmarks of segformer-serve against raw ONNX Runtime, transformers and PyTriton.

Entry point: ``python -m bench`` (``make bench``); see ``docs/benchmarks/README.md`` for the latest report.
"""
