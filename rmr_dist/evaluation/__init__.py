"""Evaluation: exact, deterministic metrics over held-out data, and the report files.

Atari: ``atari_metrics`` (slot accuracy, bit F1, entropy filter) and ``atari_abstract_eval``
score the abstract models (``atari_table2`` writes Table 2); ``atari_probes`` (with the
``atari_ram_labels`` table) score the frozen pixel encoders and ``atari_table1`` reports them
(Table 1). Bouncing balls: ``balls_eval`` and ``balls_report``. Shared: ``statistics`` (seed
statistics of both reports) and ``segmentation`` (FG-ARI).
"""
