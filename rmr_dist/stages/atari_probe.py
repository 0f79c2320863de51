"""The Atari probe stage: linear RAM probes on the frozen encoders of one (game, fraction).

Every encoder of Table 1 (the trained variants, the untrained initialisations, the supervised
ceiling) is scored by one function, `score_encoder`: AtariARI's byte probes (one 256-way linear
probe per labelled variable, weighted F1 averaged within each AtariARI category and then across
categories: ``byte_f1``, the primary score) and the paper's bit probes (``bit_f1`` on the
high-entropy RAM slots), both fit on the probe training set and early-stopped on its held-out
EPISODES, and scored on the validation episodes.

Outputs under `WorkDir.stage_dir('probe')`:
  <game>/probe_data.npz       the fixed probe training set: distinct frames and RAM drawn once
                              from the episode store's training episodes, with each frame's
                              episode id ('episode'), shared by every fraction, variant and seed
  <game>/untrained.json       the controls: the untrained encoders (per seed) and the majority
                              predictors (per bit; per AtariARI variable), shared by fractions
  <game>/ceiling.json         the supervised ceiling (probe.ceiling_steps > 0): per seed, f~
                              trained end to end on the probe set's RAM labels from that seed's
                              initialisation (`rmr_dist.evaluation.atari_ceiling`), then scored by
                              `score_encoder`; its training record under 'fit'
  <game>/f<pct>/probe.json    per variant and seed the `score_encoder` record; the controls and
                              the ceiling; the learning curve of encoder snapshots (byte F1 in
                              'learning_curve_byte', bit F1 in 'learning_curve')
"""

from __future__ import annotations

import hashlib
import io
import time
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import numpy as np

from rmr_dist import checkpointing
from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.envs import atari_palette
from rmr_dist.evaluation import atari_ceiling as ceiling_lib
from rmr_dist.evaluation import atari_latent_span
from rmr_dist.evaluation import atari_metrics
from rmr_dist.evaluation import atari_probes
from rmr_dist.learning import atari_natural as natural_learning
from rmr_dist.networks import atari_natural as natural_net
from rmr_dist.networks import processors
from rmr_dist.replay import atari_episode_store
from rmr_dist.replay import splits
from rmr_dist.replay import atari_store_batches
from rmr_dist.stages import atari_natural

LogFn = Callable[[dict[str, float], int], None]


class ProbeData(NamedTuple):
  """What every encoder's probes are fit and scored on.

  Attributes:
    train_frames: [N, H, W, 3] uint8 (or [N, K, H, W, 3] stacks with natural.frame_stack K > 1)
      distinct frames of the training episodes.
    train_ram: [N, 128] uint8 their RAM.
    train_episode: [N] int32 episode id of each frame (the probes hold out whole episodes).
    val_frames: [M, ...] frames of the validation episodes (`make_eval_data`).
    val_ram: [M, 128] uint8 their RAM.
  """
  train_frames: np.ndarray
  train_ram: np.ndarray
  train_episode: np.ndarray
  val_frames: np.ndarray
  val_ram: np.ndarray


def make_train_data(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The game's fixed probe training set, from the episode store's training episodes.

  The N = `probe.train_transitions` frames are the transitions' first steps t (the natural
  table's items) in a seeded random order over all training episodes, skipping any whose
  (frame, RAM) repeats one already drawn, so that no frame sits in both the probes' fit and
  held-out parts; episodes with fewer transitions in all give every distinct one. Cached in
  probe_data.npz.

  Returns:
    (frames [N, H, W, 3] uint8 RGB, or [N, K, H, W, 3] stacks of the K most recent frames with
    natural.frame_stack K > 1 (as `make_eval_data`); ram [N, 128] uint8; episode [N] int32, the
    frame's episode: its position in the store's sorted training entries), in (episode, t)
    order.

  Raises:
    ConfigError: the store holds no training episode of ``game``.
  """
  path = workdir.probe_data(game)
  if storage.exists(path):
    with np.load(io.BytesIO(storage.read_bytes(path))) as data:
      if 'episode' in data.files:
        return data['frames'], data['ram'], data['episode']
  store = atari_episode_store.EpisodeStore(workdir.episodes)
  entries = store.entries(game, splits.TRAIN)
  if not entries:
    raise config_lib.ConfigError(
        f'The probe stage draws its training frames from the training episodes in the episode '
        f'store {store.root}, which holds none of {game!r}: collect with '
        'collect.store_all_episodes=True (a fresh --workdir).')
  offsets = np.concatenate([[0], np.cumsum([e['length'] for e in entries])])  # [E + 1]
  n, k = config.probe.train_transitions, config.natural.frame_stack
  order = np.random.default_rng([config.seed, zlib.crc32(game.encode()), 0x960BE]).permutation(
      offsets[-1])  # [S] every transition, in draw order
  chosen, seen, pos = [], set(), 0
  frames: dict[int, np.ndarray] = {}
  ram: dict[int, np.ndarray] = {}
  while len(chosen) < n and pos < len(order):
    draw = order[pos:pos + n - len(chosen)]  # [b] global transition indices
    pos += len(draw)
    ep = np.searchsorted(offsets, draw, side='right') - 1  # [b]
    for e in np.unique(ep):
      t = draw[ep == e] - offsets[e]  # steps of episode e
      arrays = store.read_arrays(game, splits.TRAIN, entries[e]['head'], entries[e]['episode'],
                                 ('ram', 'frames'), rgb=False)
      stacked = arrays['frames'][atari_store_batches.stack_steps(t, 0, k)] if k > 1 else \
          arrays['frames'][t]  # [b_e, (K,) H, W(, 3)]
      for i, g in enumerate(draw[ep == e]):
        frames[int(g)], ram[int(g)] = stacked[i], arrays['ram'][t[i]]
    for g in draw:  # in draw order: the first of identical frames is kept
      key = hashlib.blake2b(frames[g].tobytes() + ram[g].tobytes(), digest_size=16).digest()
      if key not in seen:
        seen.add(key)
        chosen.append(int(g))
  chosen = np.sort(np.asarray(chosen, np.int64))  # [N]
  episode = (np.searchsorted(offsets, chosen, side='right') - 1).astype(np.int32)  # [N]
  out_frames = atari_palette.to_rgb(np.stack([frames[g] for g in chosen]))
  out_ram = np.stack([ram[g] for g in chosen])
  workdir_lib.atomic_write_npz(path, frames=out_frames, ram=out_ram, episode=episode)
  return out_frames, out_ram, episode


def make_eval_data(config: config_lib.AtariConfig,
                   workdir: workdir_lib.WorkDir, game: str) -> tuple[np.ndarray, np.ndarray]:
  """Every `stride`-th (frame, RAM) of the validation episodes, in (head, episode, t) order
  (frames [N, H, W, 3], or [N, K, H, W, 3] stacks with natural.frame_stack K > 1)."""
  store = atari_episode_store.EpisodeStore(workdir.episodes)
  entries = store.entries(game, splits.VAL)
  total = sum(e['length'] + 1 for e in entries)
  cap = config.probe.max_eval_frames
  stride = max(1, -(-total // cap)) if cap else 1
  frames, ram, offset = [], [], 0
  for e in entries:
    ep = store.read(game, splits.VAL, e['head'], e['episode'])
    idx = np.arange((-offset) % stride, len(ep.ram), stride)
    k = config.natural.frame_stack
    frames.append(ep.frames[atari_store_batches.stack_steps(idx, 0, k)] if k > 1
                  else ep.frames[idx])
    ram.append(ep.ram[idx])
    offset += len(ep.ram)
  return np.concatenate(frames), np.concatenate(ram)


def make_encode_fn(config: config_lib.AtariConfig) -> atari_probes.EncodeFn:
  """f~ alone, as the natural stage builds it (`natural_net.make_encode_fn`)."""
  nc = config.natural
  return natural_net.make_encode_fn(nc.maps_per_slot, config.abstract.latent_size,
                                    nc.map_activation, nc.slot_embedding, nc.trunk, nc.readout)


def untrained_encoders(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir,
                       game: str) -> dict[int, Any]:
  """{seed: f~ params} of the natural learners' initialisation (zero updates): the control."""
  nc = config.natural
  spec_dict, _ = checkpointing.restore_processor(
      atari_natural.processor_export(config, workdir, game),
      expected_spec={'latent_size': config.abstract.latent_size})
  model = natural_learning.make_model(
      processors.ModelSpec.from_dict(spec_dict), maps_per_slot=nc.maps_per_slot,
      latent_size=config.abstract.latent_size, map_activation=nc.map_activation,
      slot_embedding=nc.slot_embedding, trunk=nc.trunk, readout=nc.readout)
  return natural_learning.initial_encoder_params(
      model, config.seed, nc.num_seeds, (config.env.frame_height, config.env.frame_width),
      nc.frame_stack)


# The keys of a `score_encoder` record (every encoder of Table 1 has exactly these).
SCORE_KEYS = ('byte_f1', 'byte_mean_f1', 'byte_category_f1', 'byte_variable_f1',
              'byte_variables', 'bit_f1', 'slot_accuracy', 'train_f1', 'holdout_f1',
              'probe_steps', 'best_step', 'stopped_early', 'num_slots', 'span_share')


def score_encoder(config: config_lib.AtariConfig, encode_fn: atari_probes.EncodeFn, params: Any,
                  data: ProbeData, game: str, seed: int, abstract_encoder: Any = None
                  ) -> dict[str, Any]:
  """Fits and scores the linear RAM probes of one frozen encoder: THE code path of every
  encoder in Table 1 (trained variants, untrained initialisations, supervised ceiling).

  Both probes are fit on the probe training set, early-stopped on its held-out episodes
  (`atari_probes.split_indices` with ``data.train_episode``), and scored on the validation episodes.

  Args:
    config: program config (`probe` section).
    encode_fn: f~ (`make_encode_fn`).
    params: its parameters (only run forward).
    data: the probe training set and the validation frames.
    game: for the AtariARI byte probes.
    seed: the model's seed (probe minibatch order and held-out split: config.seed + seed).
    abstract_encoder: the pre-trained abstract encoder f of the processor export
      (`abstract_encoder`), or None.

  Returns:
    `SCORE_KEYS`: ``byte_f1`` (AtariARI's across-categories mean of the byte probes' weighted
    F1: the primary score), ``byte_mean_f1`` (mean over variables), ``byte_category_f1``
    ({category: F1}), ``byte_variable_f1`` ({variable: F1}), ``byte_variables`` (how many
    passed the entropy filter) -- all None without byte probes (probe.byte_probes off, or no
    AtariARI labels for the game); ``bit_f1`` and ``slot_accuracy`` on the validation episodes'
    high-entropy slots (Table 2's protocol), ``train_f1`` (the fitted probe frames) and
    ``holdout_f1`` (the held-out episodes' frames) of the bit probes on the same slots, and
    their ``probe_steps``, ``best_step``, ``stopped_early`` and ``num_slots``; ``span_share``
    (None without ``abstract_encoder``): the share of f~'s validation latents outside the span
    of the abstract f, where the pre-trained P was trained (`atari_latent_span.outside_span_share`).
  """
  pc = config.probe
  train_emb = atari_probes.frozen_embeddings(encode_fn, params, data.train_frames,
                                             pc.embed_batch_size)
  val_emb = atari_probes.frozen_embeddings(encode_fn, params, data.val_frames, pc.embed_batch_size)
  train_ram, val_ram = data.train_ram, data.val_ram
  mask = atari_metrics.high_entropy_slots(val_ram)  # [128] bool, the scored slots
  kw = dict(steps=pc.steps, batch_size=pc.batch_size, learning_rate=pc.learning_rate,
            weight_decay=pc.weight_decay, seed=config.seed + seed,
            early_stopping=atari_probes.EarlyStopping(pc.val_fraction, pc.eval_every, pc.patience),
            max_components=pc.max_components, groups=data.train_episode)
  bit_params, info = atari_probes.fit_bit_probes(train_emb, train_ram, slots=mask, **kw)
  bit = atari_probes.evaluate_bit_probes(bit_params, val_emb, val_ram)
  on = lambda idx: (atari_probes.bit_f1_on_slots(bit_params, train_emb[idx], train_ram[idx], mask)
                    if len(idx) else None)
  byte = None
  if pc.byte_probes:
    byte = atari_probes.evaluate_byte_probes(
        atari_probes.train_byte_probes(train_emb, train_ram, game, **kw), val_emb, val_ram)
  return {'byte_f1': None if byte is None else byte['across_categories_f1'],
          'byte_mean_f1': None if byte is None else byte['mean_f1'],
          'byte_category_f1': None if byte is None else byte['category_f1'],
          'byte_variable_f1': None if byte is None else byte['f1'],
          'byte_variables': None if byte is None else byte['num_variables'],
          'bit_f1': float(bit['bit_f1']), 'slot_accuracy': float(bit['slot_accuracy']),
          'train_f1': on(info.fit_index), 'holdout_f1': on(info.val_index),
          'probe_steps': info.steps, 'best_step': info.best_step,
          'stopped_early': bool(info.stopped_early), 'num_slots': int(bit['num_slots']),
          'span_share': None if abstract_encoder is None else atari_latent_span.outside_span_share(
              val_emb.reshape(len(val_emb), natural_net.NUM_SLOTS, -1), abstract_encoder)}


def abstract_encoder(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir,
                     game: str) -> Any:
  """The abstract encoder f stored with the game's processor export (None if it has none)."""
  return checkpointing.restore_abstract_encoder(
      atari_natural.processor_export(config, workdir, game))


def ceiling_encoders(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
                     data: ProbeData, encode_fn: atari_probes.EncodeFn
                     ) -> tuple[dict[int, Any], list[dict[str, Any]]]:
  """The supervised ceiling's encoders: per seed, f~ from that seed's untrained encoder
  (`untrained_encoders`) trained end to end on the probe training set's RAM labels
  (`ceiling.train_ceiling`, held-out episodes as for the probes, seed config.seed + seed).

  Returns:
    ({seed: trained encoder params}, [training record per seed]).
  """
  pc = config.probe
  encoders, fits = {}, []
  for seed, params in untrained_encoders(config, workdir, game).items():
    encoders[seed], fit = ceiling_lib.train_ceiling(
        encode_fn, params, data.train_frames, data.train_ram, data.train_episode, game,
        steps=pc.ceiling_steps, batch_size=pc.ceiling_batch_size,
        learning_rate=pc.ceiling_learning_rate, val_fraction=pc.val_fraction,
        eval_every=pc.eval_every, patience=pc.patience, seed=config.seed + seed)
    fits.append(fit)
  return encoders, fits


def run(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
        fraction: float, replay_address: str, *, log_fn: LogFn | None = None,
        say: Callable[[str], None] = print) -> dict[str, Any]:
  """Fits linear RAM probes on every frozen encoder of a trained fraction; returns probe.json.

  The encoders' parameters are read from the natural checkpoint
  (`natural_learning.restore_encoder_params`) and only run forward; the probes alone are
  optimised. The record also holds the controls: the untrained encoders (the same
  initialisations, zero updates; probed once per game and shared by its fractions), the
  majority predictors, and the supervised ceiling (probe.ceiling_steps > 0, once per game);
  and, for the largest fraction, where the natural stage saved encoder snapshots
  (natural.curve_steps), the probe F1 of every snapshot (the learning curve).

  Args:
    config: the program config.
    workdir: the work directory.
    game: the game.
    fraction: the natural data fraction whose encoders are probed.
    replay_address: unused (the probe set comes from the episode store); kept for the
      stage-unit signature the program calls.
    log_fn: TensorBoard scalars.
    say: unused.

  Returns:
    probe.json: ``variants`` ({variant: {`SCORE_KEYS` key: [value per seed]}}), ``untrained``
    and ``ceiling`` (the same, or None without a ceiling), ``ceiling_fit`` ([training record
    per seed]), ``majority_f1`` (bit), ``majority_byte_f1`` (across categories),
    ``majority_byte`` (the byte control's per-category and per-variable F1),
    ``learning_curve`` / ``learning_curve_byte`` ({step: {variant: [F1 per seed]}}),
    ``n_seeds``, ``n_eval_slots``, ``n_train_frames``, ``n_train_episodes``,
    ``n_eval_frames``, ``game``, ``fraction`` and ``seconds``.
  """
  del say, replay_address
  return workdir_lib.cached_result(
      workdir.probe_result(game, fraction),
      lambda: _probe(config, workdir, game, fraction, log_fn))


def _game_file(workdir: workdir_lib.WorkDir, game: str, name: str) -> str:
  return storage.join(storage.dirname(workdir.probe_data(game)), name)


def _untrained(config, workdir, game, data, encode_fn):
  def compute():
    start = time.perf_counter()
    f = abstract_encoder(config, workdir, game)
    per_seed = [score_encoder(config, encode_fn, params, data, game, seed, f)
                for seed, params in untrained_encoders(config, workdir, game).items()]
    byte_majority = (atari_probes.majority_byte_f1(data.train_ram, data.val_ram, game)
                     if config.probe.byte_probes else None)
    return {'game': game, 'per_seed': per_seed,
            'majority': atari_probes.majority_bit_f1(data.train_ram, data.val_ram),
            'majority_byte': byte_majority,
            'seconds': round(time.perf_counter() - start, 2)}

  return workdir_lib.cached_result(_game_file(workdir, game, 'untrained.json'), compute)


def _ceiling(config, workdir, game, data, encode_fn) -> Optional[dict[str, Any]]:
  """ceiling.json (cached per game), or None with probe.ceiling_steps = 0."""
  if not config.probe.ceiling_steps:
    return None

  def compute():
    start = time.perf_counter()
    encoders, fits = ceiling_encoders(config, workdir, game, data, encode_fn)
    trained = time.perf_counter() - start
    f = abstract_encoder(config, workdir, game)
    per_seed = [score_encoder(config, encode_fn, params, data, game, seed, f)
                for seed, params in encoders.items()]
    return {'game': game, 'per_seed': per_seed, 'fit': fits,
            'train_seconds': round(trained, 2),
            'seconds': round(time.perf_counter() - start, 2)}

  return workdir_lib.cached_result(_game_file(workdir, game, 'ceiling.json'), compute)


def _collect(records: list[dict[str, Any]]) -> dict[str, list]:
  """[per-seed record] -> {key: [value per seed]}."""
  return {k: [r[k] for r in records] for k in records[0]} if records else {}


def _probe(config, workdir, game, fraction, log_fn):
  natural_dir = workdir.natural_unit(game, fraction)
  if not storage.exists(storage.join(natural_dir, 'trained.json')):
    raise config_lib.ConfigError(
        f'The probe stage needs trained natural models in {natural_dir}: run the natural stage '
        f'first (--stages=...,natural,probe).')
  nc = config.natural
  data = ProbeData(*make_train_data(config, workdir, game), *make_eval_data(config, workdir,
                                                                            game))
  encode_fn = make_encode_fn(config)
  start = time.perf_counter()
  untrained = _untrained(config, workdir, game, data, encode_fn)
  ceiling = _ceiling(config, workdir, game, data, encode_fn)
  encoders = natural_learning.restore_encoder_params(storage.join(natural_dir, 'checkpoints'),
                                                     nc.variants, nc.num_seeds)
  per_model: dict[str, list] = {}
  pct = f'f{round(100 * fraction):d}'
  f = abstract_encoder(config, workdir, game)
  for (variant, seed), params in encoders.items():
    rec = score_encoder(config, encode_fn, params, data, game, seed, f)
    per_model.setdefault(variant, []).append(rec)
    if log_fn is not None:
      log_fn({f'eval/probe/{game}/{pct}/{variant}/seed_{seed}/{k}': rec[k]
              for k in ('byte_f1', 'bit_f1') if rec[k] is not None}, nc.num_steps)
  curve, byte_curve = {}, {}
  for step, snapshot in atari_natural.read_snapshots(config, workdir, game, fraction).items():
    recs = {v: [score_encoder(config, encode_fn, snapshot[(v, s)], data, game, s)
                for s in range(nc.num_seeds)] for v in nc.variants}
    curve[str(step)] = {v: [r['bit_f1'] for r in rs] for v, rs in recs.items()}
    if all(r['byte_f1'] is not None for rs in recs.values() for r in rs):
      byte_curve[str(step)] = {v: [r['byte_f1'] for r in rs] for v, rs in recs.items()}
  byte_majority = untrained.get('majority_byte')
  return {'game': game, 'fraction': fraction,
          'variants': {v: _collect(recs) for v, recs in per_model.items()},
          'untrained': _collect(untrained['per_seed']),
          'ceiling': None if ceiling is None else _collect(ceiling['per_seed']),
          'ceiling_fit': None if ceiling is None else ceiling['fit'],
          'majority_f1': float(untrained['majority']['bit_f1']),
          'majority_byte_f1': (None if byte_majority is None
                               else byte_majority['across_categories_f1']),
          'majority_byte': byte_majority,
          'learning_curve': curve, 'learning_curve_byte': byte_curve,
          'n_seeds': nc.num_seeds,
          'n_eval_slots': int(atari_metrics.high_entropy_slots(data.val_ram).sum()),
          'n_train_frames': int(len(data.train_ram)),
          'n_train_episodes': int(len(np.unique(data.train_episode))),
          'n_eval_frames': int(len(data.val_ram)),
          'seconds': round(time.perf_counter() - start, 2)}
