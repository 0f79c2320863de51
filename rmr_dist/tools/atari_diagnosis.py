"""Why does (or doesn't) an Atari natural encoder learn? A run's learning curve beside its
controls, scored by the probe stage's code, with pixel controls the stages do not compute.

Train and probe with the program itself (in this process, on a work directory whose collect and
abstract stages have run; any natural or probe setting can be overridden, and the changed
stages land in new fingerprint directories beside the old ones):

  python atari.py --workdir=runs/local --config.ray.address=none --stages=natural,probe \\
      --config.natural.num_steps=3000 "--config.natural.curve_steps=(300,1000,2000)"

then read it:

  python -m rmr_dist.tools.atari_diagnosis --workdir=runs/local --game=pong
  python -m rmr_dist.tools.atari_diagnosis --workdir=runs/local --game=breakout \\
      --pixel-control --mlp-pixel-probe=1024

It prints JSON lines for the work directory's latest config: first the controls (majority,
untrained, supervised ceiling; with --pixel-control the same linear probes on the raw frames,
`stages.atari_probe.score_encoder` with the flattened pixels as the encoder: the level an
encoder must beat to add linearly readable RAM information to the frame; with
--mlp-pixel-probe=N a one-hidden-layer MLP probe of N ReLU units on the whitened pixels, in bit
F1 and in byte F1 with the byte probes' variables: what a frame holds beyond what is linear in
its pixels, the level a learned encoder read by linear probes would have to approach); then one
line per step of the learning curve (0 is the untrained initialisation every variant starts
from), byte and bit F1 per variant and seed; then the final encoders' byte F1 per AtariARI
variable beside the untrained one's (which variables training gains and which it gives up,
where the category mean nets them out).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmr_dist import config as config_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import atari_metrics
from rmr_dist.evaluation import atari_probes
from rmr_dist.evaluation import atari_ram_labels
from rmr_dist.networks import atari_abstract as abstract_net
from rmr_dist.stages import atari_probe
from rmr_dist.tools import overrides

PROG = 'python -m rmr_dist.tools.atari_diagnosis'


def pixel_encode(params: Any, frames: jax.Array) -> jax.Array:
  """The raw frames as one "slot" of features in [0, 1]: [B, (K,) H, W, 3] -> [B, 1, D]."""
  del params
  return jnp.asarray(frames, jnp.float32).reshape(frames.shape[0], 1, -1) / 255.0


def _whitened(train_x: np.ndarray, val_x: np.ndarray, components: int
              ) -> tuple[jax.Array, jax.Array]:
  """train_x [N, D] and val_x [M, D] centred on the training mean and whitened onto at most
  `components` principal components of the training part (as the linear probes' features):
  ([N, k], [M, k])."""
  mean = train_x.mean(0)
  white = atari_probes.whitening(train_x - mean, components)  # [D, k]
  return jnp.asarray((train_x - mean) @ white), jnp.asarray((val_x - mean) @ white)


def _fit_mlp(x: jax.Array, y: jax.Array, out_dim: int, loss_fn: Callable[..., jax.Array], *,
             hidden: int, seed: int, groups: np.ndarray | None, max_steps: int,
             batch_size: int, learning_rate: float, weight_decay: float, heldout: float,
             eval_every: int, patience: int) -> tuple[Callable[[jax.Array], jax.Array], int]:
  """A one-hidden-layer MLP (`hidden` ReLU units, He-initialised) from x [N, k] to `out_dim`
  logits, fit to targets y [N, ...] by ``loss_fn(logits, y)`` (a mean) with Adam and decoupled
  weight decay; stops when the loss on the held-out part of the frames
  (`atari_probes.split_indices`: whole `groups`, i.e. episodes, when given) has not improved for
  `patience` evaluations, keeping the best. Returns (logits of new features, steps run)."""
  fit, held = atari_probes.split_indices(len(x), heldout, seed, groups)
  rng = np.random.default_rng(seed)
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  d = x.shape[1]
  params = {'w1': jax.random.normal(k1, (d, hidden)) * np.sqrt(2.0 / d),
            'b1': jnp.zeros(hidden),
            'w2': jax.random.normal(k2, (hidden, out_dim)) * np.sqrt(1.0 / hidden),
            'b2': jnp.zeros(out_dim)}
  logits = lambda p, a: jax.nn.relu(a @ p['w1'] + p['b1']) @ p['w2'] + p['b2']
  loss = lambda p, a, t: loss_fn(logits(p, a), t)
  opt = optax.adamw(learning_rate, weight_decay=weight_decay)
  opt_state = opt.init(params)

  @jax.jit
  def step(p, state, a, t):
    updates, state = opt.update(jax.grad(loss)(p, a, t), state, p)
    return optax.apply_updates(p, updates), state

  best, best_params, bad, done = np.inf, params, 0, 0
  while done < max_steps and bad < patience:
    for _ in range(eval_every):
      batch = rng.choice(fit, batch_size)
      params, opt_state = step(params, opt_state, x[batch], y[batch])
    done += eval_every
    held_loss = float(loss(params, x[held], y[held]))
    if held_loss < best - 1e-5:
      best, best_params, bad = held_loss, params, 0
    else:
      bad += 1
  return lambda a: logits(best_params, a), done


_MLP_DEFAULTS = dict(max_steps=6000, batch_size=128, learning_rate=1e-3, weight_decay=1e-4,
                     heldout=0.2, eval_every=50, patience=8)


def mlp_probe_f1(train_x: np.ndarray, train_ram: np.ndarray, val_x: np.ndarray,
                 val_ram: np.ndarray, *, hidden: int, components: int, seed: int,
                 groups: np.ndarray | None = None, **fit_kwargs: Any) -> tuple[float, int]:
  """Bit F1 of a one-hidden-layer MLP probe on whitened features, scored like the linear bit
  probes (the validation RAM's high-entropy slots, micro F1).

  train_x [N, D] and val_x [M, D] are whitened as the linear probes' features (`_whitened`);
  the MLP (`_fit_mlp`; `fit_kwargs` override `_MLP_DEFAULTS`) predicts the scored slots' bits
  with a sigmoid cross-entropy. train_ram [N, 128], val_ram [M, 128] uint8. Returns (bit F1,
  steps).
  """
  mask = atari_metrics.high_entropy_slots(val_ram)  # [128] bool
  x, v = _whitened(train_x, val_x, components)
  outputs = np.flatnonzero(np.repeat(mask, abstract_net.NUM_BITS))  # scored bits of the 1024
  y = jnp.asarray(abstract_net.bytes_to_bits(train_ram).reshape(len(train_ram), -1)[:, outputs],
                  jnp.float32)
  bce = lambda logits, t: optax.sigmoid_binary_cross_entropy(logits, t).mean()
  predict, done = _fit_mlp(x, y, len(outputs), bce, hidden=hidden, seed=seed, groups=groups,
                           **{**_MLP_DEFAULTS, **fit_kwargs})
  bits = np.zeros((len(val_x), abstract_net.NUM_SLOTS * abstract_net.NUM_BITS), np.uint8)
  bits[:, outputs] = np.asarray(predict(v)) > 0
  f1 = atari_metrics.bit_f1(bits.reshape(-1, abstract_net.NUM_SLOTS, abstract_net.NUM_BITS),
                            abstract_net.bytes_to_bits(val_ram), mask)
  return round(float(f1), 4), done


def mlp_byte_probe_f1(train_x: np.ndarray, train_ram: np.ndarray, val_x: np.ndarray,
                      val_ram: np.ndarray, game: str, *, hidden: int, components: int,
                      seed: int, groups: np.ndarray | None = None, **fit_kwargs: Any
                      ) -> tuple[float, dict[str, float], int] | None:
  """AtariARI byte F1 (the primary score) of a one-hidden-layer MLP probe on whitened features:
  the same variables as the linear byte probes (`atari_probes.byte_variables`), one 256-way
  softmax per variable on a shared hidden layer, scored by `atari_probes.weighted_f1` per
  variable and averaged within then across AtariARI categories (`atari_probes.category_f1`).

  Args as `mlp_probe_f1`, plus ``game`` (ale-py ROM id). Returns None when the game has no
  byte probes, else (across-category byte F1, {variable: F1}, steps).
  """
  selected = atari_probes.byte_variables(train_ram, game)
  if selected is None:
    return None
  names, indices = selected
  x, v = _whitened(train_x, val_x, components)
  y = jnp.asarray(np.asarray(train_ram)[:, indices].astype(np.int32))  # [N, V]
  classes = atari_probes.NUM_BYTE_CLASSES

  def xent(logits, t):  # logits [B, V * 256], t [B, V]
    logits = logits.reshape(t.shape + (classes,))
    return optax.softmax_cross_entropy_with_integer_labels(logits, t).mean()

  predict, done = _fit_mlp(x, y, len(names) * classes, xent, hidden=hidden, seed=seed,
                           groups=groups, **{**_MLP_DEFAULTS, **fit_kwargs})
  pred = np.asarray(predict(v)).reshape(len(val_x), len(names), classes).argmax(-1)  # [M, V]
  true = np.asarray(val_ram)[:, indices]  # [M, V]
  f1 = {n: round(atari_probes.weighted_f1(pred[:, i], true[:, i]), 4)
        for i, n in enumerate(names)}
  _, across = atari_probes.category_f1(f1, atari_ram_labels.ATARIARI_CATEGORIES[game])
  return round(across, 4), f1, done


def _rounded(values: list[Any]) -> list[Any]:
  return [None if x is None else round(float(x), 4) for x in values]


def _by_variable(records: list[dict[str, float] | None]) -> dict[str, list[float]]:
  """[per seed {variable: F1}] -> {variable: [F1 per seed]} (empty without byte probes)."""
  if not records or records[0] is None:
    return {}
  return {k: _rounded([r[k] for r in records]) for k in records[0]}


def lines(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
          fraction: float, *, pixel_control: bool = False, mlp_pixel_probe: int = 0,
          seeds: int = 0) -> list[dict[str, Any]]:
  """The tool's JSON records for one (game, fraction) of a probed work directory (module doc).

  Raises:
    ConfigError: the probe stage has not run for (game, fraction) under this config.
  """
  path = workdir.probe_result(game, fraction)
  probe = workdir_lib.read_json(path)
  if probe is None:
    raise config_lib.ConfigError(
        f'No probe result for {game} at fraction {fraction} under the latest config of '
        f'{workdir.root} ({path}): run its natural and probe stages first, e.g. python atari.py '
        f'--workdir={workdir.root} --config.ray.address=none --stages=natural,probe')
  header: dict[str, Any] = {
      'game': game, 'fraction': fraction, 'n_train_frames': probe['n_train_frames'],
      'n_train_episodes': probe['n_train_episodes'], 'n_eval_frames': probe['n_eval_frames'],
      'majority_byte_f1': probe['majority_byte_f1'], 'majority_bit_f1': probe['majority_f1']}
  for name in ('untrained', 'ceiling'):
    if probe[name] is not None:
      header[f'{name}_byte_f1'] = _rounded(probe[name]['byte_f1'])
      header[f'{name}_bit_f1'] = _rounded(probe[name]['bit_f1'])
  if pixel_control or mlp_pixel_probe:
    data = atari_probe.ProbeData(*atari_probe.make_train_data(config, workdir, game),
                                 *atari_probe.make_eval_data(config, workdir, game))
    count = seeds or config.natural.num_seeds
    if pixel_control:
      scored = [atari_probe.score_encoder(config, pixel_encode, None, data, game, s)
                for s in range(count)]
      header['pixel_byte_f1'] = _rounded([r['byte_f1'] for r in scored])
      header['pixel_bit_f1'] = _rounded([r['bit_f1'] for r in scored])
    if mlp_pixel_probe:
      flat = lambda f: f.reshape(len(f), -1).astype(np.float32) / 255.0  # [N, D]
      train_x, val_x = flat(data.train_frames), flat(data.val_frames)
      kwargs = dict(hidden=mlp_pixel_probe, components=config.probe.max_components,
                    groups=data.train_episode)
      header['mlp_pixel_bit_f1'] = [
          mlp_probe_f1(train_x, data.train_ram, val_x, data.val_ram, seed=config.seed + s,
                       **kwargs)[0]
          for s in range(count)]
      byte = [mlp_byte_probe_f1(train_x, data.train_ram, val_x, data.val_ram, game,
                                seed=config.seed + s, **kwargs) for s in range(count)]
      if byte[0] is not None:
        header['mlp_pixel_byte_f1'] = [b[0] for b in byte]
        header['mlp_pixel_byte_variable_f1'] = _by_variable([b[1] for b in byte])
  out = [header]
  variants = list(probe['variants'])
  curve = {0: {v: (probe['untrained']['byte_f1'], probe['untrained']['bit_f1'])
               for v in variants}}
  for step, bits in probe['learning_curve'].items():
    byte = probe['learning_curve_byte'].get(step, {})
    curve[int(step)] = {v: (byte.get(v, [None] * len(bits[v])), bits[v]) for v in variants}
  curve[config.natural.num_steps] = {v: (r['byte_f1'], r['bit_f1'])
                                     for v, r in probe['variants'].items()}
  for step in sorted(curve):
    out.append({'step': step,
                'byte_f1': {v: _rounded(curve[step][v][0]) for v in variants},
                'bit_f1': {v: _rounded(curve[step][v][1]) for v in variants}})
  out.append({'step': config.natural.num_steps, 'byte_variable_f1': {
      **{v: _by_variable(r['byte_variable_f1']) for v, r in probe['variants'].items()},
      'untrained': _by_variable(probe['untrained']['byte_variable_f1'])}})
  return out


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True,
                      help='an Atari work directory whose probe stage has run')
  parser.add_argument('--game', default='pong')
  parser.add_argument('--fraction', type=float, default=0.0,
                      help='natural data fraction (0: the largest configured)')
  parser.add_argument('--pixel-control', action='store_true',
                      help="also score the probe stage's probes on the raw frames")
  parser.add_argument('--mlp-pixel-probe', type=int, default=0, metavar='N',
                      help='also fit an MLP probe of N hidden units on the whitened raw frames')
  parser.add_argument('--seeds', type=int, default=0,
                      help='probe seeds of the pixel controls (0: natural.num_seeds)')
  args = parser.parse_args(argv)
  if args.mlp_pixel_probe < 0 or args.seeds < 0:
    parser.error(f'--mlp-pixel-probe={args.mlp_pixel_probe} and --seeds={args.seeds} need '
                 'ints >= 0 (0: off / the default)')
  try:
    config = config_lib.load_atari_config(overrides.read_config_dict(args.workdir))
    if args.game not in config.games:
      raise config_lib.ConfigError(f'--game={args.game!r}: the work directory\'s games are '
                                   f'{", ".join(config.games)}')
    fraction = args.fraction or max(config.natural.data_fractions)
    if fraction not in config.natural.data_fractions:
      raise config_lib.ConfigError(f'--fraction={args.fraction}: the configured fractions are '
                                   f'{", ".join(map(str, config.natural.data_fractions))}')
    workdir = workdir_lib.WorkDir.reopen(args.workdir, workdir_lib.ATARI_STAGES)
    records = lines(config, workdir, args.game, fraction, pixel_control=args.pixel_control,
                    mlp_pixel_probe=args.mlp_pixel_probe, seeds=args.seeds)
  except config_lib.ConfigError as e:
    parser.exit(2, f'{PROG}: error: {e}\n')
  for record in records:
    print(json.dumps(record), flush=True)


if __name__ == '__main__':
  main(sys.argv[1:])
