"""Diagnosis tools over a work directory, each runnable as ``python -m rmr_dist.tools.<name>``.

They read what the stages wrote and score it with the stages' own code (no second training or
probing loop): `atari_diagnosis` prints an Atari run's learning curve beside its controls and
adds pixel controls; `balls_ladder` scores the balls controls and trains one natural model with
the natural stage's learner under config overrides.
"""
