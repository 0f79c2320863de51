"""Evaluation: exact, deterministic metrics over held-out data (slot accuracy, bit F1, entropy filter)."""
