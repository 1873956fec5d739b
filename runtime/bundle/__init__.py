"""The bundle on the target host: stdlib + ``runtime`` only, because ``install.sh`` runs it
straight from the bundled llmcrate wheel (``PYTHONPATH=wheels/llmcrate-*.whl python3 -m
runtime.bundle ...``) before anything is installed.

A bundle is one folder ``<name>-<version>/`` holding ``bundle.json`` (always the first tar member)
that lists sha256 and size of every other file.

- :mod:`~runtime.bundle.format`: bundle.json as the :class:`BundleMeta` dataclass (both sides).
- :mod:`~runtime.bundle.archive`: tars, compressed tars, split volumes; unsafe members refused.
- :mod:`~runtime.bundle.verify`: every file checked against bundle.json; safe extraction.
- :mod:`~runtime.bundle.register`: models moved into the store with an undo journal; recovery of
  killed install runs.
- :mod:`~runtime.bundle.preflight`: the host checked against the bundle before installing.
- :mod:`~runtime.bundle.install`: install.sh's small steps (pip wheel, install.conf, unit, smoke).
- ``__main__``: the command line install.sh calls (the only place that prints).
"""
