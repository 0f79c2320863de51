"""Atari RMR configs: `test` (seconds), `local` (default; a 2-core laptop), `study` (the paired
study on a 2-core laptop: trained heads, 8 seeds, three data fractions, a learning curve and a
paired Table 2 at the paper's widths), `gpu` (one GPU) and `paper` (cluster). `local` took 25 min
49 s on 2 cores at commit 99d38a7, `study` 1 h 49 min on Pong alone at cc37ba1
(docs/experiments/atari-natural.md).

`base()` holds the defaults; each variant is one function (`_local`, ...) applying its overrides
to them, and settings several variants share sit in small named helpers each of them calls, so
a variant's function and the helpers it calls are the whole of its difference from `base()`.

Use as `--config=configs/atari.py:VARIANT`; override any field from the command line, e.g.
`--config.heads.num_heads=8`. `rmr_dist.config.load_atari_config` validates the result.
"""

import ml_collections

# The 19 games of the paper's Table 2 (the AtariARI games), as ale-py ROM ids.
PAPER_GAMES = (
    'asteroids', 'berzerk', 'bowling', 'boxing', 'breakout', 'freeway', 'frostbite', 'hero',
    'montezuma_revenge', 'ms_pacman', 'pitfall', 'pong', 'private_eye', 'riverraid', 'skiing',
    'space_invaders', 'tennis', 'venture', 'yars_revenge')

VARIANTS = ('test', 'local', 'study', 'gpu', 'paper')


def base() -> ml_collections.ConfigDict:
  """Returns the defaults every variant starts from, one comment per field."""
  c = ml_collections.ConfigDict()
  c.games = ('pong', 'breakout')  # ALE ROM ids to collect/train on (ale_py.roms ids).
  c.seed = 0  # Root seed: every episode derives its RNG from (seed, game, head, episode).

  c.env = ml_collections.ConfigDict()
  c.env.frame_skip = 4  # Emulator frames per agent step (DQN/Agent57 convention).
  # Sticky actions per frame (Machado et al., 2018: 0.25); 0 keeps RAM transitions
  # deterministic, as the paper assumes.
  c.env.repeat_action_probability = 0.0
  c.env.noop_max = 30  # Seeded 0..30 NOOP steps at every episode start (Agent57's no-op starts).
  c.env.max_episode_steps = 1000  # Agent-step cap per episode (truncation).
  c.env.frame_height = 210  # Stored frame height; 210 = ALE native (the paper's 210x160).
  c.env.frame_width = 160  # Stored frame width; 160 = ALE native (stored as palette indices).

  c.heads = ml_collections.ConfigDict()
  c.heads.num_heads = 16  # Behaviour-policy heads (the paper: 32 Agent57 heads).
  c.heads.episodes_per_head = 2  # Episodes per head and game (the paper: 3).
  c.heads.base_policy = 'random'  # 'random' or 'checkpoint' (greedy policy network).
  # With base_policy='checkpoint': 'agent' = the policies the agent stage of this work directory
  # trained (`agent/<game>/policy_<update>/`, run by --stages=agent or added to a run that
  # collects); head i of N acts from checkpoint round(i*(K-1)/(N-1)) of the K saved, in training
  # order, so head 0 (the most exploratory) plays the untrained network and head N-1 (the
  # greediest) the last one: weak to strong. A path: one save_policy checkpoint for every head,
  # or a directory of `[<game>/]policy_<update>/` checkpoints assigned the same way.
  c.heads.checkpoint_path = ''
  c.heads.epsilon = 0.4  # Ape-X base epsilon: head i explores w.p. eps**(1+alpha*i/(N-1)).
  c.heads.alpha = 7.0  # Ape-X exponent spread across heads.
  # Each head repeats its previous action with a probability drawn in [min, max] persistence.
  c.heads.min_persistence = 0.0
  c.heads.max_persistence = 0.8
  c.heads.preference_concentration = 0.3  # Dirichlet concentration of exploration preferences.

  c.collect = ml_collections.ConfigDict()
  c.collect.num_collectors = 2  # Collector actors (Ray processes), each runs several heads.
  c.collect.val_fraction = 0.5  # Episodes held out for validation (paper: 48 of 96).
  # Also write train episodes to the episode store (the probe stage fits on their frames, so
  # load_atari_config requires it).
  c.collect.store_all_episodes = True
  c.collect.max_actor_restarts = 3  # Ray restarts of a crashed collector actor.
  c.collect.status_interval_s = 5.0  # Seconds between status lines / TensorBoard counters.

  c.replay = ml_collections.ConfigDict()
  c.replay.server = 'in_process'  # 'in_process' (embedded in the driver) or 'actor' (Ray).
  c.replay.port = 0  # Reverb port; 0 picks a free one.
  # Items (windows of up to transitions_per_item transitions) per game and table.
  c.replay.abstract_max_size = 20_000  # The abstract (RAM) table.
  c.replay.natural_max_size = 20_000  # The natural (pixel) table.
  c.replay.min_size_to_sample = 1  # Items needed before a table may be sampled.
  c.replay.chunk_length = 8  # Steps per compressed chunk: cheaper writes vs. bigger samples.
  # Transitions per Reverb item (a window; the learners still draw single transitions).
  c.replay.transitions_per_item = 8
  c.replay.checkpoint = True  # Checkpoint Reverb after collection (later stages restore it).
  c.replay.num_servers = 1  # Reverb servers, replay sharded by game (round-robin; <= games).
  # Learners read batches from 'reverb' or from the episode 'store' (then no Reverb import;
  # needs collect.store_all_episodes=True).
  c.replay.learner_source = 'reverb'

  c.abstract = ml_collections.ConfigDict()
  c.abstract.models = ('copy', 'mlp', 'deepsets', 'mpnn')  # Table 2's four models.
  # Learner updates per (game, model): `paper`'s cluster budget (the paper gives none).
  c.abstract.num_steps = 100_000
  c.abstract.batch_size = 50  # Transitions per update (paper: 50), split over devices.
  c.abstract.learning_rate = 1e-3  # Adam learning rate (paper: 1e-3).
  c.abstract.latent_size = 64  # Features per RAM slot (paper: 64).
  c.abstract.hidden_size = 64  # MPNN / Deep Sets message and update MLP width (paper: 64).
  c.abstract.num_message_steps = 1  # Message-passing steps.
  c.abstract.aggregation = 'max'  # 'sum' | 'mean' | 'max' over incoming messages.
  c.abstract.mlp_hidden_size = 256  # Hidden width of the MLP processor.
  c.abstract.slot_embedding = True  # Learned slot-index embedding in f.
  c.abstract.save_every = 100  # Learner steps between Orbax checkpoints.
  c.abstract.keep_checkpoints = 2  # Checkpoints kept per learner.
  c.abstract.log_every = 25  # Learner steps between TensorBoard scalars.
  c.abstract.eval_batch_size = 500  # Transitions per evaluation batch.
  c.abstract.prefetch = 2  # Batches prepared ahead of the learner.
  # Updates after which each trained model is evaluated too (report/table2_curve.md); () = none.
  c.abstract.curve_steps = ()

  c.natural = ml_collections.ConfigDict()
  c.natural.processor_model = 'mpnn'  # Abstract export that RMR freezes (paper: MPNN).
  # RMR (frozen pre-trained P), C-SWM (same model, P trained) and RMR through a frozen P that
  # was never trained (the control for what the pre-training gives).
  c.natural.variants = ('rmr', 'cswm', 'rmr_random_p')
  c.natural.num_seeds = 5  # Seeds per variant, all on identical batches (paper: 5).
  # Lockstep updates per (game, data fraction): `paper`'s cluster budget (the paper gives none).
  c.natural.num_steps = 100_000
  c.natural.batch_size = 50  # Transitions per update (paper, Appendix B: 50).
  c.natural.learning_rate = 1e-3  # Adam (paper, Appendix B: 1e-3).
  c.natural.maps_per_slot = 1  # m: encoder maps per slot (1 = C-SWM object maps).
  c.natural.slot_embedding = True  # Learned slot-index embedding in f~ (as the abstract f).
  c.natural.map_activation = 'sigmoid'  # f~'s per-slot maps: 'sigmoid' (C-SWM) or 'none'.
  # f~'s trunk: 'full' (the paper's at 210x160: 12x9 maps) or 'small' (AtariARI's at 84x84:
  # 7x7 maps); frames are zero-padded so every pixel reaches an output.
  c.natural.trunk = 'full'
  # f~'s per-slot readout: 'latent' (the paper's linear projection to 64 features) or 'bits'
  # (8 soft bits through the abstract encoder f, frozen for RMR).
  c.natural.readout = 'latent'
  # 'hinge': C-SWM's contrastive loss (the paper's); 'infonce': softmax over the batch's next
  # frames with the same energy.
  c.natural.loss = 'hinge'
  # 'batch': i.i.d. batches (negatives from any episode); 'episode': each batch from one
  # training episode (needs replay.learner_source='store').
  c.natural.negatives = 'batch'
  # With negatives='episode': each batch from this many consecutive transitions of the episode
  # (0 = anywhere in it).
  c.natural.episode_window = 0
  # Frames per encoder input: each frame with its K - 1 predecessors (C-SWM's Atari inputs: 2,
  # so velocities are visible; the probes read the same stacks). K > 1 needs
  # replay.learner_source='store'. In `local` with map_activation='none' and sigma=3, K = 2
  # lifts both variants above the untrained control on Pong and loses Breakout's gain (README,
  # "Two-frame inputs").
  c.natural.frame_stack = 1
  c.natural.hinge = 1.0  # Contrastive hinge margin (C-SWM default).
  c.natural.sigma = 0.5  # Energy scale (C-SWM default).
  # InfoNCE losses: K > 0 adds the action contrast (the next frame must be nearer the
  # transition under the action taken than under K other actions of the batch); 0 = none.
  c.natural.action_negatives = 0
  c.natural.action_weight = 1.0  # The action contrast's weight in the loss.
  c.natural.action_start = 0  # Updates before the action contrast starts.
  c.natural.action_sigma = 0.0  # The action contrast's energy scale (0: natural.sigma).
  # How the lockstep update runs its models: 'vmap' side by side, 'sequence' one after another
  # (faster updates on CPUs, longer compiles; docs/benchmarks.md).
  c.natural.over_models = 'vmap'
  c.natural.data_fractions = (0.1, 1.0)  # Nested fractions of train episodes to train on.
  c.natural.curve_steps = ()  # Updates after which f~ is probed too (report/learning_curve).
  c.natural.save_every = 100  # Learner steps between Orbax checkpoints.
  c.natural.keep_checkpoints = 2  # Checkpoints kept.
  c.natural.log_every = 25  # Learner steps between TensorBoard scalars.
  c.natural.prefetch = 2  # Batches prepared ahead of the learner.
  c.natural.export_timeout_s = 600.0  # Wait this long for the processor export.

  c.probe = ml_collections.ConfigDict()
  # Distinct frames of the stored training episodes the probes are fit on.
  c.probe.train_transitions = 2000
  c.probe.steps = 3000  # Most Adam steps per probe (held-out early stopping ends it sooner).
  c.probe.val_fraction = 0.2  # Probe frames (whole episodes) held out to stop the fit.
  c.probe.eval_every = 25  # Probe steps between held-out evaluations.
  c.probe.patience = 8  # Held-out evaluations without improvement before stopping.
  c.probe.max_components = 1024  # Whiten embeddings onto <= this many principal components.
  # AtariARI's byte probes: their F1 across categories is Table 1's primary score.
  c.probe.byte_probes = True
  c.probe.batch_size = 128  # Probe minibatch.
  c.probe.learning_rate = 1e-3  # Probe Adam learning rate.
  c.probe.weight_decay = 1e-4  # L2 on probe weights.
  c.probe.embed_batch_size = 64  # Frames per frozen-encoder forward pass.
  c.probe.max_eval_frames = 2000  # Validation frames probed (even stride); 0 = all.
  # Supervised ceiling: f~ trained end to end on the probe set's RAM labels, at most this many
  # steps (held-out early stopping), then probed like every encoder (0 = none).
  c.probe.ceiling_steps = 2_000
  c.probe.ceiling_batch_size = 32  # Its minibatch.
  c.probe.ceiling_learning_rate = 1e-3  # Its Adam learning rate.

  c.agent = ml_collections.ConfigDict()
  # The agent stage (opt-in: --stages=agent,...): double DQN with n-step returns on RAM, per
  # game, trained by collector actors and one pmapped learner through a rate-limited Reverb
  # table; its checkpoints feed heads.checkpoint_path='agent'.
  # Agent steps per game over all actors (the budget): about 10 min for Pong on 2 idle cores,
  # where its return has risen from -21 (README, "The agent stage").
  c.agent.num_env_steps = 800_000
  c.agent.num_actors = 1  # Collector actors (Ray processes), epsilon-greedy.
  c.agent.max_episode_steps = 27_000  # Whole games (Pong: 21 points), the standard cap.
  c.agent.hidden_sizes = (256, 256)  # RamQNetwork widths (RAM -> 18 Q-values).
  # RAM input: 'bits' (1024), 'bytes' (128 scaled to [0, 1]: ordered coordinates) or 'both'.
  # 'bytes': with the bits too ('both') Pong's agent only learns to return the ball in 800k
  # steps; on bytes alone it wins points (README, "The agent stage").
  c.agent.ram_encoding = 'bytes'
  # Actions explored, learned and acted over: the game's minimal set ('minimal': Pong 6,
  # Breakout 4) rather than all 18 ('full'), so each action's value sees 3-4.5x the data.
  c.agent.action_set = 'minimal'
  c.agent.n_step = 3  # n-step returns (Rainbow's 3).
  c.agent.gamma = 0.99  # Discount per agent step.
  c.agent.learning_rate = 5e-4  # Adam.
  c.agent.batch_size = 32  # Transitions per update (DQN's 32).
  c.agent.target_update_period = 1_000  # Updates between target-network copies.
  c.agent.epsilon_start = 1.0  # Exploration decays linearly from this ...
  c.agent.epsilon_end = 0.02  # ... to this ...
  c.agent.epsilon_decay_steps = 50_000  # ... over this many agent steps (all actors).
  c.agent.param_pull_interval = 400  # Agent steps between an actor's parameter pulls.
  c.agent.samples_per_insert = 8.0  # Replay ratio: DQN's 32 samples per 4 agent steps.
  # Samples either side may run ahead of the ratio: 2,000 = 62 updates, so the collectors and
  # the learner alternate in stretches, not every few inserts.
  c.agent.error_buffer = 2_000.0
  c.agent.min_replay_size = 2_000  # Transitions before the first update.
  c.agent.replay_size = 100_000  # Replay capacity (transitions, FIFO).
  c.agent.num_checkpoints = 5  # Policies saved from the untrained one to the last.
  c.agent.clip_norm = 10.0  # Global gradient-norm clip.
  c.agent.actor_chunk_steps = 1_000  # Agent steps per actor task (episode reports between).
  c.agent.log_every = 500  # Updates between TensorBoard scalars.
  c.agent.sample_timeout_s = 5.0  # Once the actors stop: a sample blocked this long ends it.

  c.ray = ml_collections.ConfigDict()
  c.ray.address = ''  # '' = local Ray on 127.0.0.1; 'auto' or HOST:PORT joins a cluster.
  c.ray.num_cpus = 0  # CPUs for a local Ray; 0 = all of this machine's.
  c.ray.learner_num_cpus = 1.0  # CPUs each learner-group process reserves (one per host).
  c.ray.learner_num_gpus = 0.0  # GPUs each learner-group process reserves; 0 = JAX on CPU.
  c.ray.learner_max_restarts = 2  # Restarts of a dead learner process (resumes from Orbax).
  c.ray.learner_hosts = 1  # Hosts per learner group; > 1 joins them with jax.distributed.
  return c


# Helpers: settings that several variants share, each called explicitly by those variants.


def _atariari_frames(c: ml_collections.ConfigDict) -> None:
  """AtariARI's 84x84 frames and small trunk, a 2-core budget: test, local, study."""
  # The small trunk's 7x7 maps see every pixel of an 84x84 frame.
  c.env.frame_height = 84
  c.env.frame_width = 84
  c.natural.trunk = 'small'


def _infonce(c: ml_collections.ConfigDict) -> None:
  """The InfoNCE natural loss: local, study, gpu."""
  # C-SWM's hinge barely moves f~ from its initialisation at these budgets (README, "The
  # natural pipeline"); InfoNCE over the batch's next frames moves it and learns its
  # objective (held-out next-frame retrieval) within 120 updates.
  c.natural.loss = 'infonce'


def _two_core_laptop(c: ml_collections.ConfigDict) -> None:
  """What local and study share: 84x84 frames, paired one-episode batches, InfoNCE, and the
  natural and probe stages at a 2-core budget."""
  _atariari_frames(c)
  _infonce(c)
  # Learners read seeded batches from the episode store (a paired Table 2: the four models
  # train on one batch sequence; Reverb's sampling is not seeded), and each natural batch
  # comes from 48 consecutive transitions of one training episode: with i.i.d. batches the
  # static content (score, bricks) separates the InfoNCE negatives and no trained encoder
  # beat its initialisation (README, "One-episode negatives" and "Byte probes").
  c.replay.learner_source = 'store'
  c.natural.negatives = 'episode'
  c.natural.episode_window = 48
  c.natural.batch_size = 32  # Appendix B's 50 does not fit the 2-core budgets.
  # 300 updates at sigma 0.3, probed after 100 and 200 too (the learning curve); f~ reads 8
  # soft bits per slot through the abstract f (frozen for RMR: P gets inputs of the kind it
  # was trained on). 300, not the old 700: with three variants at 84x84 each update costs
  # about 2.5x the old one, and on the seed-0 episodes 700 updates left every trained encoder
  # below the untrained control on Pong (docs/experiments/atari-natural.md).
  c.natural.num_steps = 300
  c.natural.curve_steps = (100, 200)
  c.natural.sigma = 0.3
  c.natural.readout = 'bits'
  # 2,000 probe frames against 8,192 features: whitening onto 1,024 components lets the
  # probes fit episode-specific directions and scores untrained encoders 0.02-0.07 lower on
  # the validation episodes than 256 components do (README, "Probe capacity").
  c.probe.max_components = 256
  c.probe.ceiling_steps = 500


def _agent_heads(c: ml_collections.ConfigDict) -> None:
  """Heads acting from the agent stage's policies: study, paper."""
  # Heads of varying skill: the agent stage's policies (it runs before collect; at the local
  # agent budget Pong's agent goes from -20.4 to +8.6, README "The agent stage"). The study's
  # earlier README tables were measured on random heads (`--config.heads.base_policy=random`).
  c.heads.base_policy = 'checkpoint'
  c.heads.checkpoint_path = 'agent'


# Variants: each applies its overrides to `base()`.


def _test(c: ml_collections.ConfigDict) -> None:
  """Seconds: one game, tiny episodes, models and step counts."""
  _atariari_frames(c)
  c.games = ('pong',)
  c.env.max_episode_steps = 40
  c.heads.num_heads = 4
  c.collect.status_interval_s = 1.0
  # Learners read the episode store, as in `local`: their processes then import no Reverb
  # (TensorFlow), seconds of CPU per learner group. The tests that cover learners reading
  # Reverb set 'reverb' (the all-stages and object-store runs, the ssh cluster).
  c.replay.learner_source = 'store'
  c.replay.abstract_max_size = 1_000
  c.replay.natural_max_size = 1_000
  c.abstract.num_steps = 6
  c.abstract.batch_size = 8
  c.abstract.latent_size = 16
  c.abstract.hidden_size = 16
  c.abstract.mlp_hidden_size = 32
  c.abstract.save_every = 3
  c.abstract.log_every = 2
  c.natural.num_seeds = 2
  c.natural.num_steps = 4
  c.natural.batch_size = 4
  c.natural.save_every = 2
  c.natural.log_every = 2
  c.natural.data_fractions = (0.5, 1.0)
  c.natural.export_timeout_s = 5.0
  c.probe.train_transitions = 64
  c.probe.steps = 20
  c.probe.eval_every = 5
  c.probe.batch_size = 32
  c.probe.embed_batch_size = 16
  c.probe.max_eval_frames = 100
  c.probe.ceiling_steps = 6
  c.probe.ceiling_batch_size = 16
  c.ray.num_cpus = 2
  c.agent.num_env_steps = 600
  c.agent.max_episode_steps = 200
  c.agent.hidden_sizes = (16,)
  c.agent.batch_size = 8
  c.agent.target_update_period = 10
  c.agent.epsilon_decay_steps = 300
  c.agent.param_pull_interval = 100
  c.agent.min_replay_size = 100
  c.agent.replay_size = 1_000
  c.agent.error_buffer = 64.0
  c.agent.num_checkpoints = 3
  c.agent.actor_chunk_steps = 200
  c.agent.log_every = 20
  c.agent.sample_timeout_s = 2.0


def _local(c: ml_collections.ConfigDict) -> None:
  """The default: a 2-core laptop, random heads, one data fraction."""
  _two_core_laptop(c)
  # 2-core budgets: shorter episodes, fewer heads, a small MPNN (its 128 x 128 messages
  # dominate the natural update), 3 seeds (the untrained control's std needs >= 2).
  c.env.max_episode_steps = 500
  c.heads.num_heads = 8
  c.abstract.num_steps = 200
  c.abstract.hidden_size = 16
  c.natural.num_seeds = 3
  c.natural.data_fractions = (1.0,)  # The data-efficiency study is the `study` config's.
  # RMR freezes the Deep Sets export instead of the paper's MPNN (its update is about 3.7x
  # cheaper).
  c.natural.processor_model = 'deepsets'


def _study(c: ml_collections.ConfigDict) -> None:
  """The paired study (issue 33) on a 2-core laptop."""
  # 8 seeds (the paired RMR - C-SWM std measured on the local default, ~0.01 byte F1 on
  # Breakout, makes 4 seeds blind below ~0.015), three data fractions, the three variants on
  # identical batches, Table 2 at Appendix B's width (the base's hidden 64) with its curve, f~
  # reading bits through the abstract f as in `local`, and a learning curve of the largest
  # fraction. RMR freezes the Deep Sets export, as in `local`: at this shape the MPNN's
  # 16,384 edges per frame make a natural update 21x dearer (1.85 s against 0.086 s per model
  # on 2 shared cores, docs/benchmarks.md "At the configs' shapes"), 22 hours for this stage.
  # Not yet run; from those per-update costs the natural stage (24 models x 300 updates x 3
  # fractions x 2 games) is about an hour and the abstract MPNNs (500 updates at ~1.5-3 s)
  # 25-50 min on 2 cores, before the agent, collect and probe stages.
  _two_core_laptop(c)
  _agent_heads(c)
  c.abstract.num_steps = 500
  c.abstract.curve_steps = (125, 250)  # Table 2's curve: has validation stopped improving?
  c.natural.processor_model = 'deepsets'
  c.natural.num_seeds = 8
  c.natural.data_fractions = (0.1, 0.3, 1.0)
  # The 24 models one after another: 1.47 s per update against 1.86 s side by side at this
  # shape, 14 s more compiling per unit (docs/benchmarks.md, "Models side by side or one after
  # another"): about 10 minutes less over the stage's 1,800 updates.
  c.natural.over_models = 'sequence'


def _gpu(c: ml_collections.ConfigDict) -> None:
  """One GPU machine for the learners."""
  # Sized toward the anchors' budgets (issue 33): 2,000 lockstep natural updates of batch 50,
  # 100k samples per model, on the study's smallest and largest data fractions, for two games.
  # Estimated, not timed at this shape: the H100 row of docs/benchmarks.md (the C-SWM reference
  # shape, 0.007 s per model-update) scaled by FLOPs (this shape is 0.61x the reference's per
  # model: 68.9 vs 112.4 GFLOP, `python -m rmr_dist.bench natural --shape gpu`) gives ~0.064 s
  # per lockstep update of the 15 models, ~130 s per 2,000-update unit, ~9 min for the 4 units;
  # the MPNN's 3,000 abstract updates ran at 464 updates/s there (~7 s per model). One game per
  # ~10-minute device call: `--config.games="('pong',)"`. Collect on a CPU machine
  # (`--stages=collect`), copy the work directory, then run the learner stages on the GPU
  # machine: they read the episode store, so it needs no Reverb (README, Environment).
  _infonce(c)
  c.games = ('pong', 'breakout')  # base data fractions: 0.1 and 1.0
  c.replay.learner_source = 'store'
  c.abstract.num_steps = 3_000
  c.abstract.save_every = 1_000
  c.abstract.log_every = 100
  c.natural.num_steps = 2_000
  c.natural.save_every = 500
  c.natural.log_every = 50
  c.probe.train_transitions = 10_000
  c.probe.max_eval_frames = 0  # Every validation frame.
  c.ray.learner_num_cpus = 4.0  # Input pipeline and evaluation beside the GPU.
  c.ray.learner_num_gpus = 1.0


def _paper(c: ml_collections.ConfigDict) -> None:
  """The paper's scale on a cluster: Table 2's 19 games, 32 heads, 3 episodes each."""
  _agent_heads(c)
  c.games = PAPER_GAMES
  c.env.max_episode_steps = 27_000  # 108k frames, the standard Atari episode cap.
  c.heads.num_heads = 32
  c.heads.episodes_per_head = 3
  c.collect.num_collectors = 64
  c.replay.server = 'actor'
  # 48 train episodes x up to 27k steps per game.
  c.replay.abstract_max_size = 1_296_000
  c.replay.natural_max_size = 1_296_000
  c.abstract.save_every = 5_000
  c.abstract.log_every = 500
  c.natural.data_fractions = (0.1, 0.3, 1.0)
  c.natural.log_every = 500
  c.natural.save_every = 5_000
  c.probe.train_transitions = 50_000
  c.probe.max_components = 0  # All 8,192 features.
  c.probe.max_eval_frames = 0
  c.ray.address = 'auto'
  c.ray.learner_num_cpus = 8.0  # Input pipeline and evaluation on the learner node.
  c.ray.learner_num_gpus = 4.0  # All GPUs of a learner node (cluster.yaml: p3.8xlarge).
  # Agent stage at cluster scale (not run): 64 actors, 10M agent steps per game, DQN-scale
  # replay and warm-up, a wider network.
  c.agent.num_env_steps = 10_000_000
  c.agent.num_actors = 64
  c.agent.hidden_sizes = (512, 512)
  c.agent.learning_rate = 1e-4
  c.agent.epsilon_decay_steps = 1_000_000
  c.agent.min_replay_size = 50_000
  c.agent.replay_size = 1_000_000
  c.agent.target_update_period = 2_000
  c.agent.error_buffer = 20_000.0
  c.agent.num_checkpoints = 8


_OVERRIDES = {'test': _test, 'local': _local, 'study': _study, 'gpu': _gpu, 'paper': _paper}


def get_config(variant: str = 'local') -> ml_collections.ConfigDict:
  """Returns `base()` with the overrides of `variant` (one of VARIANTS)."""
  if variant not in VARIANTS:
    raise ValueError(f'Unknown atari config variant {variant!r}; valid: {", ".join(VARIANTS)}.')
  c = base()
  _OVERRIDES[variant](c)
  return c
