"""One module per method; each exposes ``Method`` (see genmod.method)."""
