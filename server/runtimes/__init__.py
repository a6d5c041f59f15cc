"""The runtimes that run a batch: one file per runtime behind one interface (``base``)."""
