"""Learners: pure train steps (pmapped where a learner is built) and plain-Python learner loops.

``loop`` holds the resumable loop every learner shares and its pmap helpers, ``optimizers`` the
optimizers, ``lockstep`` the machinery of the lockstep (variants x seeds) learners.
``atari_abstract`` trains the Atari RAM transition model f -> P -> g (paper section 4, Appendix
B), ``atari_natural`` the Atari pixel models in lockstep, ``atari_dqn`` / ``atari_agent`` the
agent; ``balls_abstract`` and ``balls_natural`` are the bouncing-balls learners (section 3). The
stage wiring that feeds them and evaluates them lives in ``stages``.
"""
