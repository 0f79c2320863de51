"""The bouncing-balls program's config schema (`configs/balls.py`): its sections and
`load_balls_config`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import ml_collections

from rmr_dist.config.schema import (AGGREGATIONS, build, NO_RAY, RayConfig, require)


BALLS_VARIANTS = ('rmr', 'end_to_end', 'rmr_random_p')  # learning.balls_natural.VARIANTS
SLOT_INITS = ('learned', 'sampled')  # networks.slot_attention.SLOT_INITS
PROCESSOR_GRAPHS = ('all', 'objects')  # networks.balls.PROCESSOR_GRAPHS
SLOT_LATENTS = ('projection', 'abstract_f')  # networks.balls.SLOT_LATENTS
READOUT_INITS = ('random', 'zeros')  # BallsNaturalConfig.readout_init
APPEARANCES = ('last_slot', 'history')  # networks.balls.APPEARANCE_INPUTS


@dataclasses.dataclass(frozen=True)
class SimConfig:
  """The MuJoCo bouncing-balls simulation and its renders.

  Attributes:
    num_balls: balls in the box (paper: 10).
    radius_min: smallest ball radius, as a fraction of the box side.
    radius_max: largest ball radius (equal to radius_min for one size of ball).
    speed_min: smallest initial speed, box sides per second.
    speed_max: largest initial speed.
    frame_dt: simulated seconds between recorded states (and frames).
    physics_dt: MuJoCo integration step; frame_dt / physics_dt substeps per frame.
    image_size: side of the square RGB renders (paper: 64).
  """
  num_balls: int
  radius_min: float
  radius_max: float
  speed_min: float
  speed_max: float
  frame_dt: float
  physics_dt: float
  image_size: int

  @property
  def displacement_scale(self) -> float:
    """S: the typical per-frame displacement of one coordinate, frame_dt * mean speed / sqrt 2.

    The balls abstract model measures velocities in units of S (`networks.balls`).
    """
    return max(self.frame_dt * (self.speed_min + self.speed_max) / (2 * math.sqrt(2)), 1e-6)

  def validate(self, path: str) -> None:
    require(self.num_balls >= 1, f'{path}.num_balls', self.num_balls, 'an int >= 1')
    require(0 < self.radius_min <= self.radius_max < 0.5, f'{path}.radius_min/radius_max',
            (self.radius_min, self.radius_max), '0 < radius_min <= radius_max < 0.5')
    require(0 <= self.speed_min <= self.speed_max, f'{path}.speed_min/speed_max',
            (self.speed_min, self.speed_max), '0 <= speed_min <= speed_max')
    require(0 < self.physics_dt <= self.frame_dt, f'{path}.physics_dt/frame_dt',
            (self.physics_dt, self.frame_dt), '0 < physics_dt <= frame_dt')
    substeps = round(self.frame_dt / self.physics_dt)
    require(abs(substeps * self.physics_dt - self.frame_dt) <= 1e-9 * max(1.0, self.frame_dt),
            f'{path}.frame_dt/physics_dt', (self.frame_dt, self.physics_dt),
            'frame_dt a whole multiple of physics_dt')
    # The simulator places balls by rejection sampling (rmr_dist.envs.balls), up to this cover.
    cover = self.num_balls * math.pi * self.radius_max ** 2
    require(cover <= 0.35, f'{path}.num_balls/radius_max', (self.num_balls, self.radius_max),
            f'balls covering at most 0.35 of the box (these cover {cover:.2f}; radius_max <= '
            f'{math.sqrt(0.35 / (math.pi * self.num_balls)):.4f} fits {self.num_balls})')
    require(self.image_size >= 8 and self.image_size & (self.image_size - 1) == 0,
            f'{path}.image_size', self.image_size, 'a power of two >= 8')


@dataclasses.dataclass(frozen=True)
class BallsDataConfig:
  """Fixed train / validation trajectory sets, simulated by Ray actors into the episode store.

  Attributes:
    train_episodes: training trajectories.
    val_episodes: validation trajectories (disjoint seeds).
    episode_frames: recorded states per trajectory.
    history: past states per input window (paper: 3); the next state is the target.
    num_workers: simulation actors.
  """
  train_episodes: int
  val_episodes: int
  episode_frames: int
  history: int
  num_workers: int

  def validate(self, path: str) -> None:
    for name in ('train_episodes', 'val_episodes', 'history', 'num_workers'):
      require(getattr(self, name) >= 1, f'{path}.{name}', getattr(self, name), 'an int >= 1')
    require(self.episode_frames > self.history, f'{path}.episode_frames', self.episode_frames,
            f'more than history={self.history} frames')


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
  """Learning-rate schedule and gradient clipping of a learner (`learning.optimizers`); the
  balls learner sections inherit these optional fields.

  Attributes:
    warmup_steps: linear learning-rate warm-up; 0 = none.
    lr_decay: 'exponential' or 'cosine'.
    decay_rate: exponential: the rate is multiplied by this every `decay_steps` (smoothly);
      cosine: the final fraction of the rate, reached `decay_steps` after the warm-up.
      1 = constant.
    decay_steps: the decay's period / length in steps.
    grad_clip_norm: gradients are clipped to this global norm (per model); 0 = no clipping.
  """
  warmup_steps: int = 0
  lr_decay: str = 'exponential'
  decay_rate: float = 1.0
  decay_steps: int = 100_000
  grad_clip_norm: float = 0.0

  def validate_schedule(self, path: str) -> None:
    require(self.warmup_steps >= 0, f'{path}.warmup_steps', self.warmup_steps, 'an int >= 0')
    require(self.lr_decay in ('exponential', 'cosine'), f'{path}.lr_decay', self.lr_decay,
            "'exponential' or 'cosine'")
    require(0.0 < self.decay_rate <= 1.0, f'{path}.decay_rate', self.decay_rate,
            'a float in (0, 1]')
    require(self.decay_steps >= 1, f'{path}.decay_steps', self.decay_steps, 'an int >= 1')
    require(self.grad_clip_norm >= 0.0, f'{path}.grad_clip_norm', self.grad_clip_norm,
            'a float >= 0')


@dataclasses.dataclass(frozen=True)
class BallsAbstractConfig(ScheduleConfig):
  """The abstract learner on positions: f linear, P an MPNN, g linear (Appendix A).

  Attributes:
    latent_size: features per ball (paper: 128).
    hidden_size: MPNN message / update width (paper: 128).
    num_message_steps: message-passing steps (paper: 2).
    aggregation: 'sum' | 'mean' | 'max' over incoming messages.
    num_steps: learner updates.
    batch_size: windows per update (paper: 512), split over local devices.
    learning_rate: Adam learning rate (paper: 1e-4).
    rollout_steps: steps of the autoregressive validation rollout (paper: 10).
    eval_batch_size: windows per evaluation batch.
    save_every: learner steps between Orbax checkpoints.
    keep_checkpoints: checkpoints kept.
    log_every: learner steps between TensorBoard scalars.
    (and the schedule and clipping fields of `ScheduleConfig`)
    input_noise: std of the random walk added to each training input history, in units of
      S (`SimConfig.displacement_scale`); 0 = none.
  """
  latent_size: int
  hidden_size: int
  num_message_steps: int
  aggregation: str
  num_steps: int
  batch_size: int
  learning_rate: float
  rollout_steps: int
  eval_batch_size: int
  save_every: int
  keep_checkpoints: int
  log_every: int

  input_noise: float = 0.0

  def validate(self, path: str) -> None:
    require(self.input_noise >= 0.0, f'{path}.input_noise', self.input_noise, 'a float >= 0')
    self.validate_schedule(path)
    for name in ('latent_size', 'hidden_size', 'num_message_steps', 'num_steps', 'batch_size',
                 'rollout_steps', 'eval_batch_size', 'save_every', 'keep_checkpoints',
                 'log_every'):
      require(getattr(self, name) >= 1, f'{path}.{name}', getattr(self, name), 'an int >= 1')
    require(self.learning_rate > 0, f'{path}.learning_rate', self.learning_rate, 'a float > 0')
    require(self.aggregation in AGGREGATIONS, f'{path}.aggregation', self.aggregation,
            f'one of {AGGREGATIONS}')


@dataclasses.dataclass(frozen=True)
class BallsNaturalConfig(ScheduleConfig):
  """The natural learners on frames: Slot Attention f~, P, broadcast decoder g~, in lockstep.

  Attributes:
    variants: 'rmr' (P the frozen abstract export), 'end_to_end' (P trained) and/or
      'rmr_random_p' (RMR through a frozen P that was never trained: seed s's fresh one, the
      end-to-end model's starting P; the control for what the pre-training gives).
    num_seeds: seeds per variant, all on identical batches (paper: 3).
    num_slots: Slot Attention slots (balls plus one for the background).
    slot_size: Slot Attention slot width.
    slot_iterations: Slot Attention iterations per image.
    encoder_channels: channels of the encoder CNN.
    encoder_layers: conv layers of the encoder CNN.
    encoder_kernel: kernel size of the encoder CNN.
    slot_init: Slot Attention's initial slots, 'learned' (one learned vector per slot) or
      'sampled' (Locatello et al.'s Gaussian).
    attention_locality: strength of a Gaussian locality term around each slot's position in
      Slot Attention's logits (0: none; networks.slot_attention.SlotAttentionEncoder).
    decoder_channels: width of the broadcast decoder's per-pixel MLP.
    decoder_layers: its hidden layers after the first.
    position_scale: the decoder's slot-relative coordinates are multiplied by this (box units
      -> about one ball radius per unit).
    num_steps: lockstep updates.
    batch_size: windows per update, split over local devices.
    learning_rate: Adam learning rate (paper: 1e-4).
    eval_windows: validation windows scored (an even stride over all of them); 0 = all.
    save_every: learner steps between Orbax checkpoints.
    keep_checkpoints: checkpoints kept.
    log_every: learner steps between TensorBoard scalars.
    export_timeout_s: how long the natural learners wait for the processor export.
    eval_every: learner steps between validation scores (MSE, FG-ARI, mask entropy) logged
      over training; 0 = only at the end.
    eval_windows_during_training: validation windows those scores use.
    processor_graph: P's graph over the slots, 'all' or 'objects' (the background slot cut
      off; networks.balls.BallsNaturalModel).
    autoencode_steps: the first updates reconstruct the last input frame with P bypassed
      (learning.balls_natural's warm-start); 0: none. Fewer than num_steps. The next-frame
      phase restarts Adam and the schedule (warm-up and decay count from its first step).
    slot_latents: what P reads: 'projection' (a learned projection of each slot's vectors
      and position features) or 'abstract_f' (the abstract f of each slot's inferred
      position history; RMR: the trained f, frozen; networks.balls.BallsNaturalModel).
    readout_init: how g~'s weights on P's output start with 'abstract_f' slot latents:
      'random' (the decoder's default initialisation) or 'zeros' (g~ leaves the warm-start,
      where zeros stand for P's output, drawing from the slot vector alone, and learns to read
      P's output by gradient: no random shock when P's output first enters;
      networks.broadcast_decoder.BroadcastDecoder.zero_inputs).
    appearance: what g~ reads beside P's output with 'abstract_f' slot latents: 'last_slot'
      (a Dense of the slot vector of the last image, slot_size wide) or 'history' (a Dense,
      latent-size wide, of what 'projection' reads: the slot's T vectors and its position
      features; networks.balls.BallsNaturalModel.appearance_input).
    oracle_steps: updates of the oracle (g~ alone through the frozen f and P on the TRUE
      positions, per variant and seed; networks.balls.BallsOracleModel), an upper
      reference for "using P"; 0: no oracle.
    (and the schedule and clipping fields of `ScheduleConfig`)
  """
  variants: tuple[str, ...]
  num_seeds: int
  num_slots: int
  slot_size: int
  slot_iterations: int
  encoder_channels: int
  encoder_layers: int
  encoder_kernel: int
  slot_init: str
  attention_locality: float
  decoder_channels: int
  decoder_layers: int
  position_scale: float
  num_steps: int
  batch_size: int
  learning_rate: float
  eval_windows: int
  save_every: int
  keep_checkpoints: int
  log_every: int
  export_timeout_s: float
  eval_every: int = 0
  eval_windows_during_training: int = 64
  processor_graph: str = 'all'
  autoencode_steps: int = 0
  slot_latents: str = 'projection'
  readout_init: str = 'random'
  appearance: str = 'last_slot'
  oracle_steps: int = 0

  def validate(self, path: str) -> None:
    self.validate_schedule(path)
    bad = [v for v in self.variants if v not in BALLS_VARIANTS]
    require(not bad and len(self.variants) >= 1 and len(set(self.variants)) ==
            len(self.variants), f'{path}.variants', self.variants,
            f'distinct variants from {BALLS_VARIANTS}')
    for name in ('num_seeds', 'num_slots', 'slot_size', 'slot_iterations', 'encoder_channels',
                 'encoder_layers', 'encoder_kernel', 'decoder_channels', 'num_steps',
                 'batch_size', 'save_every', 'keep_checkpoints', 'log_every'):
      require(getattr(self, name) >= 1, f'{path}.{name}', getattr(self, name), 'an int >= 1')
    require(self.slot_init in SLOT_INITS, f'{path}.slot_init', self.slot_init,
            f'one of {SLOT_INITS}')
    require(self.decoder_layers >= 0, f'{path}.decoder_layers', self.decoder_layers,
            'an int >= 0')
    require(0 <= self.autoencode_steps < self.num_steps, f'{path}.autoencode_steps',
            self.autoencode_steps, f'an int >= 0 and < natural.num_steps = {self.num_steps}')
    require(self.processor_graph in PROCESSOR_GRAPHS, f'{path}.processor_graph',
            self.processor_graph, f'one of {PROCESSOR_GRAPHS}')
    require(self.slot_latents in SLOT_LATENTS, f'{path}.slot_latents', self.slot_latents,
            f'one of {SLOT_LATENTS}')
    require(self.readout_init in READOUT_INITS and (
        self.readout_init == 'random' or self.slot_latents == 'abstract_f'),
            f'{path}.readout_init', self.readout_init,
            f"one of {READOUT_INITS} ('zeros' only with slot_latents='abstract_f': with "
            "'projection' the warm-start decodes P's input through the same weights)")
    require(self.appearance in APPEARANCES, f'{path}.appearance', self.appearance,
            f'one of {APPEARANCES}')
    require(self.oracle_steps >= 0, f'{path}.oracle_steps', self.oracle_steps, 'an int >= 0')
    require(self.attention_locality >= 0, f'{path}.attention_locality',
            self.attention_locality, 'a float >= 0')
    require(self.eval_windows >= 0, f'{path}.eval_windows', self.eval_windows, 'an int >= 0')
    require(self.eval_every >= 0, f'{path}.eval_every', self.eval_every, 'an int >= 0')
    require(self.eval_windows_during_training >= 1, f'{path}.eval_windows_during_training',
            self.eval_windows_during_training, 'an int >= 1')
    for name in ('learning_rate', 'export_timeout_s', 'position_scale'):
      require(getattr(self, name) > 0, f'{path}.{name}', getattr(self, name), 'a float > 0')


@dataclasses.dataclass(frozen=True)
class BallsConfig:
  """The whole bouncing-balls RMR program.

  Attributes:
    seed: root seed (trajectory seeds, initialisation, batch order).
    sim: simulation and rendering.
    data: train / validation trajectories.
    abstract: abstract learner on positions.
    natural: natural learners on frames.
    ray: Ray placement.
  """
  seed: int
  sim: SimConfig
  data: BallsDataConfig
  abstract: BallsAbstractConfig
  natural: BallsNaturalConfig
  ray: RayConfig

  def validate(self, path: str) -> None:
    require(self.seed >= 0, f'{path}.seed', self.seed, 'an int >= 0')
    need = self.data.history + self.abstract.rollout_steps
    require(self.data.episode_frames >= need, f'{path}.data.episode_frames',
            self.data.episode_frames, f'at least data.history + abstract.rollout_steps = {need}')
    require(self.ray.address != NO_RAY, f'{path}.ray.address', self.ray.address,
            "'' (a local Ray), 'auto' or 'HOST:PORT' (the balls program runs on Ray; "
            f'{NO_RAY!r} is for the Atari learner stages)')


def load_balls_config(config: ml_collections.ConfigDict | Mapping[str, Any]) -> BallsConfig:
  """Validates a user config (e.g. `configs/balls.py:local`) and returns the `BallsConfig`.

  Raises:
    ConfigError: naming the first unknown/missing key, wrong type or invalid value.
  """
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  return build(BallsConfig, config, 'config')
