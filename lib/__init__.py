"""Companion library of the report.

``lib.core`` (data, downloads, weights, artifacts, provenance) is used by ``lib.cifar``
(chapters 1-2) and ``lib.movies`` (chapter 3); ``lib.book`` turns their frozen artifacts
into the chapters' figures, tables and numbers; ``lib.bench`` times the fast paths;
``lib.cli`` is ``python -m lib``. Heavy work writes frozen artifacts under ``results/``.
"""
