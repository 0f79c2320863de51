"""Replay (Atari): Reverb tables and writers, the train/validation split and the on-disk episode
store."""
