"""One module per stage of each program, each a plain unit that runs in one process.

Atari: `atari_agent`, `atari_collect`, `atari_abstract`, `atari_natural`, `atari_probe`,
`atari_report` (the agent and collect stages run on Ray actors: `rmr_dist.distributed.atari_agent`
and `rmr_dist.distributed.atari_program`; their modules here hold what needs no Ray). Bouncing
balls: `balls_data`, `balls_abstract`, `balls_natural`, `balls_report`.

A learned stage's unit is `run(config, workdir, ..., log_fn=None, say=print)`, built from
`make_*` pieces (iterator, learner, evaluator) in the manner of Acme's builders. It reads and
writes only through its `rmr_dist.workdir.WorkDir`, returns its result record, and finds a
finished unit's record instead of redoing it. `rmr_dist.distributed` decides where units run
(learner groups of Ray actors) and in what order; a test runs them directly, without Ray.
"""
