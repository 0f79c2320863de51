"""Learners: pure train steps (pmapped where a learner is built) and plain-Python learner loops.

``abstract`` trains the RAM transition model f -> P -> g (paper section 4, Appendix B); the
stage wiring that feeds it from Reverb and evaluates it lives in ``stages``.
"""
