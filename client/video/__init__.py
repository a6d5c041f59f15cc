"""``segformer-client video``: decode a file, a stream or a camera with PyAV, segment every frame (files)
or the newest frame (live sources) through ``client.pipeline``, write overlay/mask videos, mask PNGs and
per-frame statistics. Needs the ``client`` extra (``av``, ``tqdm``). See docs/client.md."""
