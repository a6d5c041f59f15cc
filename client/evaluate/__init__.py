"""``segformer-eval``: mIoU of a served model on a labelled folder, as mmseg's ``IoUMetric`` computes it.

``metrics`` (pure numpy), ``labels`` (dataset label conventions), ``dataset`` (image ↔ annotation
pairing), ``runner`` (streaming through ``SegformerClient``), ``report`` (table, JSON, comparison),
``local`` (a private server for a model path), ``cli``. See docs/eval.md.
"""
