"""Evaluation: exact, deterministic metrics over held-out data, and the report files.

``metrics`` (slot accuracy, bit F1, entropy filter) and ``abstract_eval`` score the abstract
models (``table2`` writes Table 2); ``probes`` (with the ``atariari_labels`` table) score the
frozen pixel encoders and ``statistics`` / ``table1`` report them (Table 1); ``balls_eval`` and
``balls_report`` do the same for bouncing balls.
"""
