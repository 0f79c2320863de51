"""The Atari program's config schema (`configs/atari.py`): its sections and `load_atari_config`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import ml_collections

from rmr_dist.config.schema import (AGGREGATIONS, build, ConfigError, NO_RAY, RayConfig, require,
                                    require_curve_steps)


@functools.lru_cache(maxsize=1)
def valid_games() -> tuple[str, ...]:
  """ALE ROM ids that ship with ale-py (the valid values of `games`)."""
  from ale_py import roms  # pylint: disable=g-import-not-at-top
  return tuple(sorted(roms.get_all_rom_ids()))


def check_game(game: str) -> str:
  """Returns `game` if ale-py ships its ROM, else raises ConfigError listing valid ids."""
  games = valid_games()
  if game not in games:
    close = [g for g in games if game.replace('-', '_').lower()[:4] in g][:5]
    hint = f' Did you mean one of {close}?' if close else ''
    raise ConfigError(f'Unknown game {game!r}.{hint} Valid games (ale-py ROM ids): '
                      f'{", ".join(games)}')
  return game


@dataclasses.dataclass(frozen=True)
class EnvConfig:
  """ALE environment settings.

  Attributes:
    frame_skip: emulator frames per agent step (the action is repeated; rewards summed).
    repeat_action_probability: sticky-action probability per emulator frame (Machado et al.);
      0 keeps RAM transitions deterministic, as the paper assumes.
    max_episode_steps: agent-step cap of an episode (truncation).
    frame_height: height of the learners' RGB frames; 210 keeps ALE's native size.
    frame_width: width of the learners' RGB frames; 160 keeps ALE's native size. At the native
      210x160, replay and the episode store hold ALE palette indices (3x smaller, exact; RGB is
      rebuilt where frames are consumed); smaller sizes are resized and stored as RGB.
    noop_max: every episode starts with a seeded number of NOOP steps in 0..noop_max (Agent57's
      random no-op starts), not recorded.
  """
  frame_skip: int
  repeat_action_probability: float
  max_episode_steps: int
  frame_height: int
  frame_width: int
  noop_max: int

  def validate(self, path: str) -> None:
    require(1 <= self.frame_skip <= 64, f'{path}.frame_skip', self.frame_skip, 'an int in [1, 64]')
    require(0.0 <= self.repeat_action_probability < 1.0, f'{path}.repeat_action_probability',
            self.repeat_action_probability, 'a float in [0, 1)')
    require(self.max_episode_steps >= 1, f'{path}.max_episode_steps', self.max_episode_steps,
            'an int >= 1')
    require(8 <= self.frame_height <= 210, f'{path}.frame_height', self.frame_height,
            'an int in [8, 210]')
    require(8 <= self.frame_width <= 160, f'{path}.frame_width', self.frame_width,
            'an int in [8, 160]')
    require(0 <= self.noop_max <= 1000, f'{path}.noop_max', self.noop_max,
            'an int in [0, 1000]')


BASE_POLICIES = ('random', 'checkpoint')
RAM_ENCODINGS = ('bits', 'bytes', 'both')  # rmr_dist.networks.atari_policy.ENCODINGS
# The agent's actions: all 18 of the console, or the game's minimal set (ALE's
# getMinimalActionSet, e.g. Pong's 6); `rmr_dist.envs.atari.agent_actions`.
AGENT_ACTION_SETS = ('full', 'minimal')
AGENT_CHECKPOINTS = 'agent'  # heads.checkpoint_path: the agent stage's checkpoints.


@dataclasses.dataclass(frozen=True)
class HeadsConfig:
  """The family of behaviour-policy heads (see `rmr_dist.acting.atari_heads`).

  Attributes:
    num_heads: number of heads N (the paper's Agent57 has 32).
    episodes_per_head: episodes each head plays per game (the paper: 3).
    base_policy: 'random' (uniform over 18 actions) or 'checkpoint' (greedy policy network).
    checkpoint_path: with base_policy='checkpoint' (required then): 'agent' (AGENT_CHECKPOINTS)
      for the checkpoints the agent stage of this work directory saved, `agent/<game>/
      policy_<update>/` (head i of N acts from checkpoint round(i * (K - 1) / (N - 1)) of K,
      in training order: head 0, the most exploratory, from the untrained network, head N-1,
      the least, from the last); or a directory holding such `<game>/policy_<update>/` or
      `policy_<update>/` checkpoints (the same assignment); or one checkpoint written by
      `rmr_dist.checkpointing.save_policy` (every head acts from it).
    epsilon: Ape-X base epsilon; head i explores with eps ** (1 + alpha * i / (N - 1)).
    alpha: Ape-X exponent spread.
    min_persistence, max_persistence: each head's probability of repeating its previous
      action is drawn uniformly in [min_persistence, max_persistence].
    preference_concentration: Dirichlet concentration of each head's exploration action
      preferences (small = peaky, distinct heads; large = near uniform).
  """
  num_heads: int
  episodes_per_head: int
  base_policy: str
  checkpoint_path: str
  epsilon: float
  alpha: float
  min_persistence: float
  max_persistence: float
  preference_concentration: float

  def validate(self, path: str) -> None:
    require(self.num_heads >= 1, f'{path}.num_heads', self.num_heads, 'an int >= 1')
    require(self.episodes_per_head >= 1, f'{path}.episodes_per_head', self.episodes_per_head,
            'an int >= 1')
    require(self.base_policy in BASE_POLICIES, f'{path}.base_policy', self.base_policy,
            f'one of {BASE_POLICIES}')
    if self.base_policy == 'checkpoint':
      require(bool(self.checkpoint_path), f'{path}.checkpoint_path', self.checkpoint_path,
              'a policy checkpoint directory when base_policy="checkpoint"')
    require(0.0 <= self.epsilon <= 1.0, f'{path}.epsilon', self.epsilon, 'a float in [0, 1]')
    require(self.alpha >= 0.0, f'{path}.alpha', self.alpha, 'a float >= 0')
    require(0.0 <= self.max_persistence < 1.0, f'{path}.max_persistence', self.max_persistence,
            'a float in [0, 1)')
    require(0.0 <= self.min_persistence <= self.max_persistence, f'{path}.min_persistence',
            self.min_persistence, f'a float in [0, max_persistence={self.max_persistence}]')
    require(self.preference_concentration > 0.0, f'{path}.preference_concentration',
            self.preference_concentration, 'a float > 0')


@dataclasses.dataclass(frozen=True)
class CollectConfig:
  """Collection stage settings.

  Attributes:
    num_collectors: collector actors (each a Ray actor process running several heads).
    val_fraction: fraction of episodes held out for validation, split by episode.
    store_all_episodes: also write training episodes to the on-disk episode store.
    max_actor_restarts: how often Ray restarts a crashed collector actor.
    status_interval_s: seconds between progress lines / TensorBoard counter writes.
  """
  num_collectors: int
  val_fraction: float
  store_all_episodes: bool
  max_actor_restarts: int
  status_interval_s: float

  def validate(self, path: str) -> None:
    require(self.num_collectors >= 1, f'{path}.num_collectors', self.num_collectors,
            'an int >= 1')
    require(0.0 < self.val_fraction < 1.0, f'{path}.val_fraction', self.val_fraction,
            'a float in (0, 1)')
    require(self.max_actor_restarts >= 0, f'{path}.max_actor_restarts',
            self.max_actor_restarts, 'an int >= 0')
    require(self.status_interval_s > 0, f'{path}.status_interval_s', self.status_interval_s,
            'a float > 0')


REPLAY_SERVERS = ('in_process', 'actor')
LEARNER_SOURCES = ('reverb', 'store')


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
  """Reverb replay settings (one abstract and one natural table per game).

  Attributes:
    server: 'in_process' (embedded in the driver) or 'actor' (a Ray actor; clusters).
    port: server port; 0 picks a free one.
    abstract_max_size: capacity (items) of each per-game abstract table.
    natural_max_size: capacity (items) of each per-game natural table.
    min_size_to_sample: items a table must hold before sampling is allowed.
    chunk_length: steps per compressed Reverb chunk. Longer chunks make writing cheaper (one
      compression call per chunk; `python -m rmr_dist.bench collect` measures it), but a sampled
      item fetches and decompresses the whole chunks it references.
    transitions_per_item: the longest window of consecutive transitions one Reverb item holds
      (`rmr_dist.replay.atari_tables`). Each item costs its own metadata, gRPC message and server
      insert, so longer windows make collection cheaper; learners still draw single
      transitions, uniformly. Equal to chunk_length, an item spans one chunk and one step of
      the next, so a sample fetches at most two chunks.
    checkpoint: write a Reverb checkpoint after collection so later stages (or a restarted
      run) restore the replay contents instead of collecting again.
    num_servers: Reverb servers the replay is sharded over, by game (game i of `games` lives
      on server i mod num_servers; `rmr_dist.replay.atari_tables.server_games`). One server holds
      every table; more spread the insert load past one server's saturation point
      (`python -m rmr_dist.bench scaling`). At most the number of games.
    learner_source: where the abstract, natural and probe learners read their batches:
      'reverb' (the tables) or 'store' (the same items from the on-disk episode store,
      `rmr_dist.replay.atari_store_batches`; needs `collect.store_all_episodes=True`). With 'store'
      the learners never import Reverb, so they run where it cannot be installed.
  """
  server: str
  port: int
  abstract_max_size: int
  natural_max_size: int
  min_size_to_sample: int
  chunk_length: int
  checkpoint: bool
  num_servers: int
  learner_source: str = 'reverb'
  transitions_per_item: int = 8

  def validate(self, path: str) -> None:
    require(self.server in REPLAY_SERVERS, f'{path}.server', self.server,
            f'one of {REPLAY_SERVERS}')
    require(self.learner_source in LEARNER_SOURCES, f'{path}.learner_source',
            self.learner_source, f'one of {LEARNER_SOURCES}')
    require(self.num_servers >= 1, f'{path}.num_servers', self.num_servers, 'an int >= 1')
    require(0 <= self.port <= 65535, f'{path}.port', self.port, 'an int in [0, 65535]')
    require(self.abstract_max_size >= 1, f'{path}.abstract_max_size', self.abstract_max_size,
            'an int >= 1')
    require(self.natural_max_size >= 1, f'{path}.natural_max_size', self.natural_max_size,
            'an int >= 1')
    require(self.min_size_to_sample >= 1, f'{path}.min_size_to_sample',
            self.min_size_to_sample, 'an int >= 1')
    require(1 <= self.chunk_length <= 256, f'{path}.chunk_length', self.chunk_length,
            'an int in [1, 256]')
    require(1 <= self.transitions_per_item <= 256, f'{path}.transitions_per_item',
            self.transitions_per_item, 'an int in [1, 256]')


ABSTRACT_MODELS = ('copy', 'mlp', 'deepsets', 'mpnn')


@dataclasses.dataclass(frozen=True)
class AbstractConfig:
  """The abstract (RAM) learners: one model per (game, model), trained from the abstract table.

  Attributes:
    models: which of 'copy', 'mlp', 'deepsets', 'mpnn' to train and evaluate (copy has no
      parameters and is only evaluated).
    num_steps: learner updates per (game, model).
    batch_size: transitions per update (the paper: 50), split over local devices.
    learning_rate: Adam learning rate (the paper: 1e-3).
    latent_size: features per RAM slot in the latent (the paper: 64).
    hidden_size: width of the MPNN / Deep Sets message and update MLPs.
    num_message_steps: message-passing steps of MPNN / Deep Sets.
    aggregation: 'sum', 'mean' or 'max' over incoming messages.
    mlp_hidden_size: hidden width of the MLP processor.
    slot_embedding: learned slot-index embedding in f (lets the model tell slots apart).
    save_every: learner steps between Orbax checkpoints.
    keep_checkpoints: checkpoints kept per learner.
    log_every: learner steps between TensorBoard scalars.
    eval_batch_size: transitions per evaluation batch.
    prefetch: batches prepared ahead of the learner.
    curve_steps: update counts (below num_steps) after which each trained model is also
      evaluated on the validation episodes (Table 2's learning curve, report/table2_curve.*);
      () = none.
  """
  models: tuple[str, ...]
  num_steps: int
  batch_size: int
  learning_rate: float
  latent_size: int
  hidden_size: int
  num_message_steps: int
  aggregation: str
  mlp_hidden_size: int
  slot_embedding: bool
  save_every: int
  keep_checkpoints: int
  log_every: int
  eval_batch_size: int
  prefetch: int
  curve_steps: tuple[int, ...] = ()

  def validate(self, path: str) -> None:
    bad = [m for m in self.models if m not in ABSTRACT_MODELS]
    require_curve_steps(self.curve_steps, self.num_steps, f'{path}.curve_steps')
    require(not bad and len(self.models) >= 1 and len(set(self.models)) == len(self.models),
            f'{path}.models', self.models, f'distinct models from {ABSTRACT_MODELS}')
    for name in ('num_steps', 'batch_size', 'latent_size', 'hidden_size', 'num_message_steps',
                 'mlp_hidden_size', 'save_every', 'keep_checkpoints', 'log_every',
                 'eval_batch_size', 'prefetch'):
      require(getattr(self, name) >= 1, f'{path}.{name}', getattr(self, name), 'an int >= 1')
    require(self.learning_rate > 0, f'{path}.learning_rate', self.learning_rate, 'a float > 0')
    require(self.aggregation in AGGREGATIONS, f'{path}.aggregation', self.aggregation,
            f'one of {AGGREGATIONS}')


NATURAL_VARIANTS = ('rmr', 'cswm', 'rmr_random_p')  # learning.atari_natural.VARIANTS
TRUNKS = ('small', 'full')  # natural.trunk (networks.atari_natural.TRUNKS)
READOUTS = ('latent', 'bits')  # natural.readout (networks.atari_natural.READOUTS)
NEGATIVES = ('batch', 'episode')  # natural.negatives
# natural.loss (learning.atari_natural.LOSSES)
NATURAL_LOSSES = ('hinge', 'infonce', 'slot_infonce')
OVER_MODELS = ('vmap', 'sequence')  # natural.over_models (learning.lockstep.OVER_MODELS)


@dataclasses.dataclass(frozen=True)
class NaturalConfig:
  """The natural (pixel) learners: RMR (frozen pre-trained P) and C-SWM (P trained), in lockstep.

  Attributes:
    processor_model: which abstract model's processor export RMR uses ('mpnn' in the paper).
    variants: which of 'rmr', 'cswm', 'rmr_random_p' to train (RMR through a frozen processor
      that was never trained: the control for what the pre-training gives).
    num_seeds: seeds per variant; every variant x seed sees the same batches (paper: 5).
    num_steps: lockstep updates per (game, data fraction).
    batch_size: transitions per update, split over local devices.
    learning_rate: Adam learning rate (C-SWM's default 5e-4).
    maps_per_slot: m, encoder feature maps per slot (1 = C-SWM-style object maps).
    slot_embedding: add a slot-index embedding to f~'s slots where the abstract f adds its own
      (RMR: the abstract f's, from the processor export, frozen; C-SWM: fresh, trained).
    map_activation: 'sigmoid' (C-SWM's object maps) or 'none' on f~'s per-slot maps.
    trunk: f~'s CNN trunk: 'small' (AtariARI's at 84x84: 7x7 maps) or 'full' (the paper's at
      210x160); frames are zero-padded so every pixel reaches an output.
    readout: how f~ reads each slot's maps: 'latent' (the paper's linear projection) or 'bits'
      (8 soft bits through the abstract encoder f: RMR's P gets inputs of the kind and scale it
      was trained on).
    loss: 'hinge' (C-SWM's contrastive hinge, the paper's), 'infonce' (softmax over the
      batch's next frames with the same energy; ``rmr_dist.losses.infonce_loss``) or
      'slot_infonce' (the same slot by slot, ``rmr_dist.losses.slot_infonce_loss``).
    negatives: where a batch's contrastive negatives come from. 'batch': uniform i.i.d. batches
      of the table, so negatives are transitions of other episodes too; 'episode': each learner
      process draws its batch from one training episode (chosen with probability proportional
      to its length, so every transition stays equally likely), so the negatives share the
      episode's static content (bricks, score) and only what moves tells them apart. 'episode'
      reads the episode store (replay.learner_source='store').
    episode_window: with negatives='episode', draw each batch from this many consecutive
      transitions of the episode (negatives a few steps apart); 0 = the whole episode.
    frame_stack: K, frames per encoder input: each frame with its K - 1 predecessors, as
      C-SWM's Atari inputs (K = 2), so f~ can see velocities (the probes read the same
      stacks, untrained encoders included). K > 1 reads the episode store
      (replay.learner_source='store').
    hinge: margin of the contrastive hinge loss (C-SWM: 1.0).
    sigma: energy scale, d = ||x - y||^2 / (2 sigma^2) (C-SWM: 0.5).
    action_negatives: K > 0 (InfoNCE losses): add an action contrast: each row's next frame
      must be nearer the transition under the action taken than under K other actions (those
      of other rows of the batch; ``rmr_dist.losses.action_infonce_loss``), so f~ must keep
      what the actions move; 0 = none.
    action_weight: the action contrast's weight in the loss.
    action_start: updates before the action contrast starts (0: from the first): at
      initialisation the frame InfoNCE's gradient is orders of magnitude smaller than the
      action contrast's, which then holds f~ on its initial plateau.
    action_sigma: the action contrast's energy scale (0: `sigma`).
    over_models: how the lockstep update runs its models (`learning.lockstep.per_model`):
      'vmap' side by side, or 'sequence' one after another (no grouped convolutions: faster
      updates on CPUs, M times the graph to compile; docs/benchmarks.md).
    data_fractions: fractions of the training episodes to train on (nested subsets); each
      fraction < 1 gets its own Reverb table at collection time.
    curve_steps: update counts (below num_steps) after which f~ is saved and probed, for the
      learning curve of the largest fraction (report/learning_curve.*); () = none.
    save_every: learner steps between Orbax checkpoints.
    keep_checkpoints: checkpoints kept.
    log_every: learner steps between TensorBoard scalars.
    prefetch: batches prepared ahead of the learner.
    export_timeout_s: how long the natural learners wait for the processor export.
  """
  processor_model: str
  variants: tuple[str, ...]
  num_seeds: int
  num_steps: int
  batch_size: int
  learning_rate: float
  maps_per_slot: int
  slot_embedding: bool
  map_activation: str
  trunk: str
  readout: str
  loss: str
  negatives: str
  episode_window: int
  frame_stack: int
  hinge: float
  sigma: float
  action_negatives: int
  action_weight: float
  action_start: int
  action_sigma: float
  over_models: str
  data_fractions: tuple[float, ...]
  curve_steps: tuple[int, ...]
  save_every: int
  keep_checkpoints: int
  log_every: int
  prefetch: int
  export_timeout_s: float

  def validate(self, path: str) -> None:
    require(self.processor_model in ('mpnn', 'deepsets', 'mlp'), f'{path}.processor_model',
            self.processor_model, "one of ('mpnn', 'deepsets', 'mlp')")
    bad = [v for v in self.variants if v not in NATURAL_VARIANTS]
    require(not bad and len(self.variants) >= 1 and len(set(self.variants)) ==
            len(self.variants), f'{path}.variants', self.variants,
            f'distinct variants from {NATURAL_VARIANTS}')
    for name in ('num_seeds', 'num_steps', 'batch_size', 'maps_per_slot', 'frame_stack',
                 'save_every', 'keep_checkpoints', 'log_every', 'prefetch'):
      require(getattr(self, name) >= 1, f'{path}.{name}', getattr(self, name), 'an int >= 1')
    for name in ('learning_rate', 'hinge', 'sigma', 'action_weight', 'export_timeout_s'):
      require(getattr(self, name) > 0, f'{path}.{name}', getattr(self, name), 'a float > 0')
    require(self.action_negatives == 0 or (self.action_negatives >= 1 and
                                            self.loss in ('infonce', 'slot_infonce')),
            f'{path}.action_negatives', self.action_negatives,
            f"0, or with an InfoNCE loss (loss={self.loss!r}) an int >= 1")
    require(self.action_start >= 0 and (self.action_negatives == 0 or
                                        self.action_start < self.num_steps),
            f'{path}.action_start', self.action_start,
            f'an int in [0, num_steps={self.num_steps})')
    require(self.action_sigma >= 0, f'{path}.action_sigma', self.action_sigma,
            'a float >= 0 (0: natural.sigma)')
    require(self.over_models in OVER_MODELS, f'{path}.over_models', self.over_models,
            f'one of {OVER_MODELS}')
    require(self.map_activation in ('sigmoid', 'none'), f'{path}.map_activation',
            self.map_activation, "'sigmoid' or 'none'")
    require(self.trunk in TRUNKS, f'{path}.trunk', self.trunk, f'one of {TRUNKS}')
    require(self.readout in READOUTS, f'{path}.readout', self.readout, f'one of {READOUTS}')
    require(self.loss in NATURAL_LOSSES, f'{path}.loss', self.loss,
            f'one of {NATURAL_LOSSES}')
    require(self.negatives in NEGATIVES, f'{path}.negatives', self.negatives,
            f'one of {NEGATIVES}')
    require(self.episode_window == 0 or (self.negatives == 'episode' and
                                          self.episode_window >= self.batch_size),
            f'{path}.episode_window', self.episode_window,
            f"0, or with negatives='episode' an int >= batch_size={self.batch_size} (a batch "
            'holds distinct transitions of the window)')
    require(len(self.data_fractions) >= 1 and all(0.0 < f <= 1.0 for f in self.data_fractions)
            and len(set(self.data_fractions)) == len(self.data_fractions),
            f'{path}.data_fractions', self.data_fractions, 'distinct fractions in (0, 1]')
    require_curve_steps(self.curve_steps, self.num_steps, f'{path}.curve_steps')


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  """Linear RAM probes on the frozen natural encoders.

  Attributes:
    train_transitions: distinct transitions drawn from the episode store's training episodes
      to fit the probes on (fewer if they hold fewer; needs collect.store_all_episodes=True).
    steps: Adam steps of each probe (the most, with early stopping).
    val_fraction: about this part of the probe's training frames, in whole episodes, is held out
      to stop the fit when their score (bit F1; byte cross-entropy) stops improving (AtariARI's
      early stopping); 0 = exactly `steps` steps.
    eval_every: probe steps between held-out evaluations.
    patience: held-out evaluations without improvement before a probe stops.
    batch_size: probe minibatch size.
    learning_rate: probe Adam learning rate.
    weight_decay: L2 penalty on probe weights.
    embed_batch_size: frames per encoder forward pass when embedding.
    max_eval_frames: cap on the validation frames probed, taken at an even stride over all
      validation episodes; 0 probes every frame.
    max_components: whiten the standardised embeddings onto at most this many principal
      components of the probe's training frames before fitting (0: fit on all features).
    byte_probes: also fit AtariARI's byte probes (byte_f1: F1 averaged within each AtariARI
      category, then across categories; Table 1's primary score).
    ceiling_steps: most Adam steps of the supervised ceiling (f~ trained end to end on the
      probe training set's RAM labels, early-stopped on its held-out episodes every
      `eval_every` steps with `patience`; `rmr_dist.evaluation.atari_ceiling`); 0 = no ceiling.
    ceiling_batch_size: the ceiling's minibatch size.
    ceiling_learning_rate: the ceiling's Adam learning rate.
  """
  train_transitions: int
  steps: int
  val_fraction: float
  eval_every: int
  patience: int
  batch_size: int
  learning_rate: float
  weight_decay: float
  embed_batch_size: int
  max_eval_frames: int
  max_components: int
  byte_probes: bool
  ceiling_steps: int = 0
  ceiling_batch_size: int = 32
  ceiling_learning_rate: float = 1e-3

  def validate(self, path: str) -> None:
    require(self.max_eval_frames >= 0, f'{path}.max_eval_frames', self.max_eval_frames,
            'an int >= 0')
    require(self.ceiling_steps >= 0, f'{path}.ceiling_steps', self.ceiling_steps,
            'an int >= 0')
    require(self.ceiling_batch_size >= 1, f'{path}.ceiling_batch_size',
            self.ceiling_batch_size, 'an int >= 1')
    require(self.ceiling_learning_rate > 0, f'{path}.ceiling_learning_rate',
            self.ceiling_learning_rate, 'a float > 0')
    for name in ('train_transitions', 'steps', 'batch_size', 'embed_batch_size', 'eval_every',
                 'patience'):
      require(getattr(self, name) >= 1, f'{path}.{name}', getattr(self, name), 'an int >= 1')
    require(self.max_components >= 0, f'{path}.max_components', self.max_components,
            'an int >= 0')
    require(0.0 <= self.val_fraction <= 0.5, f'{path}.val_fraction', self.val_fraction,
            'a float in [0, 0.5]')
    require(self.learning_rate > 0, f'{path}.learning_rate', self.learning_rate, 'a float > 0')
    require(self.weight_decay >= 0, f'{path}.weight_decay', self.weight_decay, 'a float >= 0')


@dataclasses.dataclass(frozen=True)
class AgentConfig:
  """The agent stage: a double-DQN policy per game, trained by collector actors + one learner
  (`rmr_dist.distributed.atari_agent`), whose checkpoints the `checkpoint` heads act from.

  Attributes:
    num_env_steps: agent steps per game, summed over the actors (the training budget).
    num_actors: collector actors (Ray processes) acting epsilon-greedily.
    max_episode_steps: agent-step cap of a training episode (27,000 = the standard 108k frames).
    hidden_sizes: hidden widths of the RAM Q-network (`rmr_dist.networks.atari_policy`).
    n_step: n of the n-step return.
    gamma: discount per agent step.
    learning_rate: Adam learning rate.
    batch_size: transitions per update (split over the local devices).
    target_update_period: updates between copies of the online into the target network.
    epsilon_start: exploration rate at step 0, decayed linearly to ...
    epsilon_end: ... this rate, reached after ...
    epsilon_decay_steps: ... this many agent steps (summed over the actors).
    param_pull_interval: agent steps between an actor's pulls of the learner's parameters.
    samples_per_insert: the replay table's SampleToInsertRatio (`replay.atari_agent_table`: 8 is
      DQN's one update of 32 every 4 steps).
    error_buffer: samples either side may run ahead of the ratio before it blocks.
    min_replay_size: transitions in replay before the first update.
    replay_size: replay capacity (transitions).
    num_checkpoints: policies saved, evenly spaced over training from the untrained network
      (update 0) to the last update: `agent/<game>/policy_<update>/`.
    clip_norm: global gradient-norm clip (0: none).
    actor_chunk_steps: agent steps an actor plays per task before it reports its episodes.
    log_every: learner updates between TensorBoard scalars.
    sample_timeout_s: once the actors have stopped, a sample blocked this long ends training.
    ram_encoding: how the RAM enters the Q-network: 'bits' (1024), 'bytes' (128 scaled to
      [0, 1]) or 'both' (`rmr_dist.networks.atari_policy.ENCODINGS`).
    action_set: the actions the agent explores, learns and acts over: 'full' (all 18) or
      'minimal' (the game's minimal set; the network keeps 18 outputs, the others masked, and
      its checkpoints record the set so the heads act over it too).
  """
  num_env_steps: int
  num_actors: int
  max_episode_steps: int
  hidden_sizes: tuple[int, ...]
  n_step: int
  gamma: float
  learning_rate: float
  batch_size: int
  target_update_period: int
  epsilon_start: float
  epsilon_end: float
  epsilon_decay_steps: int
  param_pull_interval: int
  samples_per_insert: float
  error_buffer: float
  min_replay_size: int
  replay_size: int
  num_checkpoints: int
  clip_norm: float
  actor_chunk_steps: int
  log_every: int
  sample_timeout_s: float
  ram_encoding: str = 'bits'
  action_set: str = 'full'

  def validate(self, path: str) -> None:
    def req(name, cond, valid):
      require(cond, f'{path}.{name}', getattr(self, name), valid)
    req('num_env_steps', self.num_env_steps >= 1, 'an int >= 1')
    req('num_actors', self.num_actors >= 1, 'an int >= 1')
    req('max_episode_steps', self.max_episode_steps >= 1, 'an int >= 1')
    req('hidden_sizes', len(self.hidden_sizes) >= 1 and min(self.hidden_sizes) >= 1,
        'one or more widths >= 1')
    req('n_step', 1 <= self.n_step <= 100, 'an int in [1, 100]')
    req('gamma', 0.0 <= self.gamma <= 1.0, 'a float in [0, 1]')
    req('learning_rate', self.learning_rate > 0, 'a float > 0')
    req('batch_size', self.batch_size >= 1, 'an int >= 1')
    req('target_update_period', self.target_update_period >= 1, 'an int >= 1')
    req('epsilon_start', 0.0 <= self.epsilon_start <= 1.0, 'a float in [0, 1]')
    req('epsilon_end', 0.0 <= self.epsilon_end <= self.epsilon_start,
        f'a float in [0, epsilon_start={self.epsilon_start}]')
    req('epsilon_decay_steps', self.epsilon_decay_steps >= 1, 'an int >= 1')
    req('param_pull_interval', self.param_pull_interval >= 1, 'an int >= 1')
    req('samples_per_insert', self.samples_per_insert > 0, 'a float > 0')
    req('error_buffer', self.error_buffer >= max(1.0, self.samples_per_insert),
        f'a float >= max(1, samples_per_insert={self.samples_per_insert})')
    req('min_replay_size', 1 <= self.min_replay_size <= self.replay_size,
        f'an int in [1, replay_size={self.replay_size}]')
    req('min_replay_size', self.min_replay_size < self.num_env_steps,
        f'an int < num_env_steps={self.num_env_steps}')
    req('replay_size', self.replay_size >= self.batch_size,
        f'an int >= batch_size={self.batch_size}')
    req('num_checkpoints', self.num_checkpoints >= 2, 'an int >= 2 (untrained and last)')
    req('clip_norm', self.clip_norm >= 0, 'a float >= 0')
    req('actor_chunk_steps', self.actor_chunk_steps >= 1, 'an int >= 1')
    req('log_every', self.log_every >= 1, 'an int >= 1')
    req('sample_timeout_s', self.sample_timeout_s > 0, 'a float > 0')
    req('ram_encoding', self.ram_encoding in RAM_ENCODINGS, f'one of {RAM_ENCODINGS}')
    req('action_set', self.action_set in AGENT_ACTION_SETS, f'one of {AGENT_ACTION_SETS}')


@dataclasses.dataclass(frozen=True)
class AtariConfig:
  """The whole Atari RMR program.

  Attributes:
    games: ALE ROM ids to collect and train on.
    seed: root seed; every episode's randomness derives from (seed, game, head, episode).
    env: ALE settings.
    heads: behaviour-policy family.
    collect: collection stage.
    replay: Reverb tables and server.
    abstract: abstract (RAM) learners.
    natural: natural (pixel) learners.
    probe: linear RAM probes.
    ray: Ray placement.
    agent: the agent stage (trains the policies of `heads.checkpoint_path='agent'`).
  """
  games: tuple[str, ...]
  seed: int
  env: EnvConfig
  heads: HeadsConfig
  collect: CollectConfig
  replay: ReplayConfig
  abstract: AbstractConfig
  natural: NaturalConfig
  probe: ProbeConfig
  ray: RayConfig
  agent: AgentConfig

  def validate(self, path: str) -> None:
    require(len(self.games) >= 1, f'{path}.games', self.games, 'at least one game')
    require(len(set(self.games)) == len(self.games), f'{path}.games', self.games,
            'distinct games')
    require(self.replay.num_servers <= len(self.games), f'{path}.replay.num_servers',
            self.replay.num_servers, f'at most the number of games ({len(self.games)}): '
            'replay is sharded by game')
    for game in self.games:
      check_game(game)
    if self.replay.learner_source == 'store' and not self.collect.store_all_episodes:
      raise ConfigError(
          f"Invalid config value {path}.replay.learner_source='store' with "
          f'{path}.collect.store_all_episodes=False: the learners would read training episodes '
          'that the episode store does not keep. Set collect.store_all_episodes=True (it '
          "changes the collected data: a fresh --workdir), or replay.learner_source='reverb'.")
    if self.ray.address == NO_RAY and self.replay.learner_source != 'store':
      raise ConfigError(
          f'Invalid config value {path}.ray.address={NO_RAY!r} with '
          f'{path}.replay.learner_source={self.replay.learner_source!r}: without Ray there is '
          "no Reverb server to read; set replay.learner_source='store' (the learners read the "
          f'episode store), or {path}.ray.address=\'\' (a local Ray).')
    if self.natural.negatives == 'episode' and self.replay.learner_source != 'store':
      raise ConfigError(
          f"Invalid config value {path}.natural.negatives='episode' with "
          f'{path}.replay.learner_source={self.replay.learner_source!r}: one-episode batches '
          "are drawn from the episode store. Set replay.learner_source='store' and "
          "collect.store_all_episodes=True, or natural.negatives='batch'.")
    if self.natural.frame_stack > 1 and self.replay.learner_source != 'store':
      raise ConfigError(
          f'Invalid config value {path}.natural.frame_stack={self.natural.frame_stack} with '
          f'{path}.replay.learner_source={self.replay.learner_source!r}: frame stacks are read '
          "from the episode store. Set replay.learner_source='store' and "
          'collect.store_all_episodes=True, or natural.frame_stack=1.')
    if not self.collect.store_all_episodes:
      raise ConfigError(
          f'Invalid config value {path}.collect.store_all_episodes=False: the probe stage '
          f'draws its training frames ({path}.probe.train_transitions) and their episode ids '
          'from the training episodes in the episode store, which then keeps only validation '
          'episodes. Set collect.store_all_episodes=True (it changes the collected data: a '
          'fresh --workdir).')
    from rmr_dist.networks import atari_natural  # pylint: disable=g-import-not-at-top
    low = atari_natural.min_side(self.natural.trunk)
    for side, limit in (('frame_height', 210), ('frame_width', 160)):
      value = getattr(self.env, side)
      require(value >= low, f'{path}.env.{side}', value,
              f'an int in [{low}, {limit}]: the {self.natural.trunk!r} trunk needs at least '
              f'{low} pixels a side (nearest valid: {low}; 84 is AtariARI\'s size)')
    if set(self.natural.variants) & {'rmr', 'rmr_random_p'}:
      require(self.natural.processor_model in self.abstract.models,
              f'{path}.natural.processor_model', self.natural.processor_model,
              f'one of the trained abstract models {self.abstract.models}')
    require(self.seed >= 0, f'{path}.seed', self.seed, 'an int >= 0')
    hosts = self.ray.learner_hosts
    for section in ('abstract', 'natural'):
      batch = getattr(self, section).batch_size
      require(batch % hosts == 0, f'{path}.{section}.batch_size', batch,
              f'a multiple of ray.learner_hosts={hosts} (each host samples an equal share)')


def load_atari_config(config: ml_collections.ConfigDict | Mapping[str, Any]) -> AtariConfig:
  """Validates a user config and returns the typed `AtariConfig`.

  Args:
    config: a ConfigDict (e.g. from `configs/atari.py:local`) or a plain nested dict.

  Returns:
    The frozen, validated AtariConfig.

  Raises:
    ConfigError: naming the first unknown/missing key, wrong type or invalid value.
  """
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  return build(AtariConfig, config, 'config')
