"""Learners: pure train steps (pmapped where a learner is built) and plain-Python learner loops.

``loop`` holds the resumable loop every learner shares and its pmap helpers. ``abstract``
trains the Atari RAM transition model f -> P -> g (paper section 4, Appendix B), ``natural``
the Atari pixel models in lockstep; ``balls_abstract`` and ``balls_natural`` are the
bouncing-balls learners (section 3). The stage wiring that feeds them and evaluates them lives
in ``stages``.
"""
