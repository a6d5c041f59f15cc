"""What comes back: every output format of a mask, in one registry (``formats.FORMATS``)."""
