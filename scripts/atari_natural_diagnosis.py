"""Why does (or doesn't) the Atari natural encoder learn? Cheap experiments in one process.

Collects a few episodes of one game straight from ALE (persistent random actions, no sticky
actions, seeded no-op starts), trains the natural model's C-SWM variant (P fresh and trained)
for a few seeds in lockstep, and after each listed number of updates prints one JSON line: the
linear RAM-probe bit F1 per seed on held-out episodes (the probe stage's probes: early stopping
on a held-out part of the probe frames, whitened features, the validation RAM's high-entropy
slots), the embeddings' mean per-feature std over frames (collapse), and the last update's
positive and negative energies. Step 0 is the untrained encoders; the majority-class-per-bit
F1 is printed first, and with --pixel-control the same probes fit on the raw frames (flattened
pixels in [0, 1], whitened like the embeddings): the level any encoder must beat to add
linearly readable RAM information to the frame itself. With --mlp-pixel-probe=N a one-hidden-
layer MLP probe (N ReLU units) is fit on the same whitened pixels and held-out split and scored
the same way: what a single frame holds beyond what is linear in its pixels, the headroom an
encoder could open up for a linear probe. With --per-slot every line also gives each scored
RAM slot's own bit F1 (named by AtariARI's labels where it has them): which bytes training
gains and which it gives up, where the pooled F1 nets them out.
With --export=<a processor export> it trains RMR (that processor, frozen) beside C-SWM in
lockstep, as the pipeline's natural stage does, and probes both; --frame-stack=2 gives the
encoders two-frame inputs (natural.frame_stack).

  python scripts/atari_natural_diagnosis.py --steps=0,50,150
  python scripts/atari_natural_diagnosis.py --game=breakout --slot-embedding
  python scripts/atari_natural_diagnosis.py --map-activation=none --batch=50
  python scripts/atari_natural_diagnosis.py --loss=infonce --slot-embedding
  python scripts/atari_natural_diagnosis.py --game=breakout --loss=infonce --same-episode
  python scripts/atari_natural_diagnosis.py --game=pong --steps=0 --pixel-control
  python scripts/atari_natural_diagnosis.py --store=<workdir>/episodes --steps=0 \
      --pixel-control --mlp-pixel-probe=1024 --slot-embedding --probe-components=256
  python scripts/atari_natural_diagnosis.py --game=breakout --store=<workdir>/episodes
  python scripts/atari_natural_diagnosis.py --loss=infonce --slot-embedding --window=48 \
      --processor=deepsets --probe-components=256 --steps=0,300,1000 --per-slot
  python scripts/atari_natural_diagnosis.py --store=<workdir>/episodes --loss=infonce \
      --export=<workdir>/abstract/<hash>/pong/deepsets/processor --slot-embedding --window=48 \
      --frame-stack=2 --map-activation=none --sigma=3 --probe-components=256 --per-slot
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmr_dist import checkpointing
from rmr_dist.acting import atari_policies
from rmr_dist.envs import atari
from rmr_dist.evaluation import atari_ram_labels
from rmr_dist.evaluation import atari_metrics
from rmr_dist.evaluation import atari_probes
from rmr_dist.learning import lockstep
from rmr_dist.learning import atari_natural as natural_learning
from rmr_dist.networks import atari_abstract as abstract_net
from rmr_dist.networks import atari_natural as natural_net
from rmr_dist.networks import processors
from rmr_dist.replay import atari_episode_store
from rmr_dist.replay import atari_store_batches


def collect(game, shape, episodes, steps, switch_prob=0.3):
  """[(frames [T+1, H, W, 3], ram [T+1, 128], actions [T])] per episode."""
  env = atari.AtariEnv(game, frame_shape=shape, max_episode_steps=steps, noop_max=30)
  return [atari_policies.persistent_random_episode(env, e, steps, switch_prob)
          for e in range(episodes)]


def read_store(root, game, split):
  """The same triples for every `split` episode of `game` in the episode store at `root` (a
  pipeline run's `<workdir>/episodes`: its heads' data instead of persistent random actions)."""
  store = atari_episode_store.EpisodeStore(root)
  out = []
  for e in store.entries(game, split):
    ep = store.read(game, split, e['head'], e['episode'])
    out.append((ep.frames, ep.ram, ep.action))
  if not out:
    raise SystemExit(f'--store={root}: no {split} episodes of {game}')
  return out


def mlp_probe_f1(train_x, train_ram, val_x, val_ram, *, hidden, components, seed,
                 max_steps=6000, batch_size=128, learning_rate=1e-3, weight_decay=1e-4,
                 heldout=0.2, eval_every=50, patience=8):
  """Bit F1 of a one-hidden-layer MLP probe on whitened features, scored like the linear
  probes (the validation RAM's high-entropy slots, micro F1).

  train_x [N, D] and val_x [M, D] are centred on the training mean and whitened onto at most
  `components` principal components (as the linear probes' features); the MLP (`hidden` ReLU
  units, He-initialised) predicts the scored slots' bits with a sigmoid cross-entropy, Adam with
  decoupled weight decay, and stops when the loss on a held-out `heldout` share of the training
  frames has not improved for `patience` evaluations, keeping the best. Returns (bit F1, steps).
  """
  mask = atari_metrics.high_entropy_slots(val_ram)  # [128] bool
  mean = train_x.mean(0)
  white = atari_probes.whitening(train_x - mean, components)  # [D, k]
  x = jnp.asarray((train_x - mean) @ white)
  v = jnp.asarray((val_x - mean) @ white)
  outputs = np.flatnonzero(np.repeat(mask, abstract_net.NUM_BITS))  # scored bits of the 1024
  y = jnp.asarray(abstract_net.bytes_to_bits(train_ram).reshape(len(train_ram), -1)[:, outputs],
                  jnp.float32)
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(x))
  held, fit = order[:int(len(x) * heldout)], order[int(len(x) * heldout):]
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  d, o = x.shape[1], y.shape[1]
  params = {'w1': jax.random.normal(k1, (d, hidden)) * np.sqrt(2.0 / d),
            'b1': jnp.zeros(hidden),
            'w2': jax.random.normal(k2, (hidden, o)) * np.sqrt(1.0 / hidden),
            'b2': jnp.zeros(o)}
  logits = lambda p, a: jax.nn.relu(a @ p['w1'] + p['b1']) @ p['w2'] + p['b2']
  loss = lambda p, a, t: optax.sigmoid_binary_cross_entropy(logits(p, a), t).mean()
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
  bits = np.zeros((len(val_x), abstract_net.NUM_SLOTS * abstract_net.NUM_BITS), np.uint8)
  bits[:, outputs] = np.asarray(logits(best_params, v)) > 0
  f1 = atari_metrics.bit_f1(bits.reshape(-1, abstract_net.NUM_SLOTS, abstract_net.NUM_BITS),
                            abstract_net.bytes_to_bits(val_ram), mask)
  return round(float(f1), 4), done


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--game', default='pong')
  p.add_argument('--height', type=int, default=84)
  p.add_argument('--width', type=int, default=64)
  p.add_argument('--episodes', type=int, default=12, help='2/3 train, 1/3 held out')
  p.add_argument('--episode-steps', type=int, default=400)
  p.add_argument('--switch-prob', type=float, default=0.3,
                 help='persistent-random episodes: probability of drawing a new action a step '
                      '(1: uniform random actions)')
  p.add_argument('--steps', default='0,50,150,300', help='updates after which to probe')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--lr', type=float, default=1e-3)
  p.add_argument('--seeds', type=int, default=2)
  p.add_argument('--processor', default='mpnn', choices=('mpnn', 'deepsets', 'mlp'))
  p.add_argument('--hidden', type=int, default=16)
  p.add_argument('--latent', type=int, default=64)
  p.add_argument('--slot-embedding', action='store_true')
  p.add_argument('--frame-stack', type=int, default=1,
                 help='frames per encoder input (natural.frame_stack): each frame with its '
                      'predecessors, oldest first, as C-SWM stacks 2 on Atari')
  p.add_argument('--map-activation', default='sigmoid', choices=natural_net.MAP_ACTIVATIONS)
  p.add_argument('--loss', default='hinge', choices=natural_learning.LOSSES)
  p.add_argument('--hinge', type=float, default=1.0)
  p.add_argument('--sigma', type=float, default=0.5)
  p.add_argument('--probe-frames', type=int, default=2000)
  p.add_argument('--probe-components', type=int, default=1024,
                 help='probe.max_components: whiten onto at most this many components')
  p.add_argument('--same-episode', action='store_true',
                 help='draw each batch from one training episode, picked uniformly (in-batch '
                      'negatives share the episode\'s static content, e.g. bricks and score)')
  p.add_argument('--window', type=int, default=0,
                 help='draw each batch from a window of this many consecutive transitions of '
                      'one training episode (negatives a few steps away: what moves must be '
                      'encoded); 0 = off')
  p.add_argument('--windows-per-batch', type=int, default=1,
                 help='with --window: draw each batch from this many windows (each of a random '
                      'training episode, --batch / this many transitions from each): negatives '
                      'both a few steps away and from elsewhere')
  p.add_argument('--byte-probes', action='store_true',
                 help="also fit AtariARI's 256-way byte probes (its labelled variables); each "
                      'score is then (bit F1, mean byte F1)')
  p.add_argument('--store', default='',
                 help="train on the 'train' episodes of an episode store (a pipeline run's "
                      "<workdir>/episodes) and probe its 'val' ones, instead of collecting "
                      'persistent-random episodes (--episodes, --episode-steps, --switch-prob '
                      'then only serve --val-random; --height/--width must match the stored '
                      'frames)')
  p.add_argument('--val-store', default='',
                 help="probe on the 'val' episodes of this episode store, whatever the training "
                      'data (crosses the data sets)')
  p.add_argument('--val-random', action='store_true',
                 help='probe on the held-out third of the persistent-random episodes, whatever '
                      'the training data')
  p.add_argument('--pixel-control', action='store_true',
                 help='also probe the raw frames (flattened pixels) with the same probes')
  p.add_argument('--mlp-pixel-probe', type=int, default=0,
                 help='also fit an MLP probe with this many hidden units on the whitened raw '
                      'pixels (0 = off): the headroom over linear pixel probes')
  p.add_argument('--export', default='',
                 help="an abstract processor export (a pipeline run's "
                      '<workdir>/abstract/<hash>/<game>/<model>/processor): train RMR (that P, '
                      'frozen) beside C-SWM (the same P, trained), in lockstep on the same '
                      'batches, and probe both (--processor/--hidden/--latent then come from '
                      'the export)')
  p.add_argument('--per-slot', action='store_true',
                 help="also give each scored RAM slot's bit F1, per seed (AtariARI's variable "
                      'names where labelled)')
  a = p.parse_args()
  if a.mlp_pixel_probe < 0:
    p.error(f'--mlp-pixel-probe={a.mlp_pixel_probe}: hidden units, an int >= 1 (0 = off)')
  if not 0.0 < a.switch_prob <= 1.0:
    p.error(f'--switch-prob={a.switch_prob}: needs a probability in (0, 1]')
  if a.windows_per_batch < 1 or a.batch % a.windows_per_batch:
    p.error(f'--windows-per-batch={a.windows_per_batch}: needs an int >= 1 that divides '
            f'--batch={a.batch}')
  if a.window and (a.window < a.batch or a.same_episode):
    p.error(f'--window={a.window}: needs an int >= --batch={a.batch} (a batch holds distinct '
            'transitions of the window), without --same-episode (0 turns it off)')
  if a.frame_stack < 1:
    p.error(f'--frame-stack={a.frame_stack}: needs an int >= 1')
  if a.export:  # A bad export fails here, before any episode is collected or probed.
    try:
      spec_dict, processor_params = checkpointing.restore_processor(a.export)
    except checkpointing.CheckpointError as e:
      p.error(f'--export={a.export}: {e}')
  steps = sorted(int(x) for x in a.steps.split(','))
  shape = (a.height, a.width)
  start = time.perf_counter()

  if a.val_store and a.val_random:
    p.error('--val-store and --val-random both name the probe episodes: give one')
  n_train = a.episodes * 2 // 3
  if a.store:
    train, held = read_store(a.store, a.game, 'train'), read_store(a.store, a.game, 'val')
  if not a.store or a.val_random:
    episodes = collect(a.game, shape, a.episodes, a.episode_steps, a.switch_prob)
    if not a.store:
      train = episodes[:n_train]
    held = episodes[n_train:]
  if a.val_store:
    held = read_store(a.val_store, a.game, 'val')
  if a.frame_stack > 1:  # [T+1, H, W, 3] -> [T+1, K, H, W, 3] per episode
    stack = lambda f: f[atari_store_batches.stack_steps(np.arange(len(f)), 0, a.frame_stack)]
    train = [(stack(f), r, x) for f, r, x in train]
    held = [(stack(f), r, x) for f, r, x in held]
  for frames, _, _ in (train[0], held[0]):
    if frames.shape[-3:-1] != shape:
      p.error(f'stored frames are {frames.shape[-3:-1]}, not --height/--width {shape}')
  frames_t = np.concatenate([f[:-1] for f, _, _ in train])
  frames_tp1 = np.concatenate([f[1:] for f, _, _ in train])
  actions = np.eye(atari.NUM_ACTIONS, dtype=np.uint8)[np.concatenate([x for _, _, x in train])]
  ram_t = np.concatenate([r[:-1] for _, r, _ in train])
  ends = np.cumsum([len(x) for _, _, x in train])  # Transition index bounds per episode.
  episode_index = [np.arange(e - len(x), e) for e, (_, _, x) in zip(ends, train)]
  pick = np.random.default_rng(1).choice(len(frames_t), min(a.probe_frames, len(frames_t)),
                                         replace=False)
  probe_train = (frames_t[pick], ram_t[pick])
  val = (np.concatenate([f for f, _, _ in held]), np.concatenate([r for _, r, _ in held]))
  mask = atari_metrics.high_entropy_slots(val[1])
  names = {v: k for k, v in atari_ram_labels.ATARIARI_LABELS.get(a.game, {}).items()}
  label = lambda k: f'{k}:{names[k]}' if k in names else str(k)  # RAM slot k's name

  def per_slot(fitted, val_emb):
    """{slot label: bit F1} of fitted bit probes on the validation embeddings."""
    f1 = atari_metrics.bit_f1_per_slot(atari_probes.predict_bits(fitted, val_emb),
                                       abstract_net.bytes_to_bits(val[1]), mask)
    return {label(k): round(v, 3) for k, v in f1.items()}

  def by_slot(scores):
    """Per-seed {slot: F1} dicts -> {slot: [F1 per seed]}."""
    return {k: [d[k] for d in scores] for k in scores[0]}

  def probe_f1(encode, params, seed):
    """Held-out bit F1 of the probes on ``encode(params, frames)``, the train embeddings and
    (with --per-slot, else None) each scored slot's bit F1."""
    emb = atari_probes.frozen_embeddings(encode, params, probe_train[0], 100)
    val_emb = atari_probes.frozen_embeddings(encode, params, val[0], 100)
    fitted, _ = atari_probes.fit_bit_probes(
        emb, probe_train[1], steps=3000, batch_size=128, learning_rate=1e-3,
        weight_decay=0.0, seed=seed, early_stopping=atari_probes.EarlyStopping(0.2, 25, 4),
        max_components=a.probe_components, slots=mask)
    bit = round(atari_probes.evaluate_bit_probes(fitted, val_emb, val[1])['bit_f1'], 4)
    slots = per_slot(fitted, val_emb) if a.per_slot else None
    if not a.byte_probes:
      return bit, emb, slots
    byte = atari_probes.evaluate_byte_probes(atari_probes.train_byte_probes(
        emb, probe_train[1], a.game, steps=3000, batch_size=128, learning_rate=1e-3,
        weight_decay=0.0, seed=seed, early_stopping=atari_probes.EarlyStopping(0.2, 25, 4),
        max_components=a.probe_components), val_emb, val[1])
    return (bit, round(byte['mean_f1'], 4) if byte else None), emb, slots

  # Action persistence of the training data: the share of steps that repeat the previous one.
  repeats = np.mean(np.concatenate([x[1:] == x[:-1] for _, _, x in train]))
  header = {'game': a.game, 'train_transitions': len(frames_t), 'val_frames': len(val[1]),
            'action_repeat': round(float(repeats), 3),
            'scored_slots': int(mask.sum()),
            'majority_f1': round(atari_probes.majority_bit_f1(probe_train[1], val[1])['bit_f1'], 4)}
  if a.per_slot:
    entropy = atari_metrics.slot_entropy(val[1])  # [128] nats
    header['slot_entropy'] = {label(k): round(float(entropy[k]), 2)
                              for k in np.flatnonzero(mask)}
  if a.pixel_control:
    # frames [B, H, W, 3] -> [B, 1, H * W * 3] in [0, 1]: one "slot" of raw pixels.
    pixels = lambda _, x: jnp.asarray(x, jnp.float32).reshape(x.shape[0], 1, -1) / 255.0
    scored = [probe_f1(pixels, None, s) for s in range(a.seeds)]
    header['pixel_f1'] = [x[0] for x in scored]
    if a.per_slot:
      header['pixel_per_slot'] = by_slot([x[2] for x in scored])
  if a.mlp_pixel_probe:
    flat = lambda f: f.reshape(len(f), -1).astype(np.float32) / 255.0  # [N, H * W * 3]
    header['mlp_pixel_f1'] = [
        mlp_probe_f1(flat(probe_train[0]), probe_train[1], flat(val[0]), val[1],
                     hidden=a.mlp_pixel_probe, components=a.probe_components, seed=s)[0]
        for s in range(a.seeds)]
  print(json.dumps(header), flush=True)

  if a.export:
    spec = processors.ModelSpec.from_dict(spec_dict)
    a.latent = spec.latent_size
    variants = ('rmr', 'cswm')
  else:
    spec = processors.ModelSpec(a.processor, latent_size=a.latent, hidden_size=a.hidden)
    variants = ('cswm',)
  model = natural_learning.make_model(spec, maps_per_slot=1, latent_size=a.latent,
                                      map_activation=a.map_activation,
                                      slot_embedding=a.slot_embedding)
  optimizer = lockstep.make_optimizer(a.lr, variants, a.seeds)
  if not a.export:
    processor_params = natural_learning.init_per_seed(model, jax.random.PRNGKey(99), 1,
                                                      shape)[0]['processor']
  state = natural_learning.init_state(model, optimizer, jax.random.PRNGKey(0),
                                      variants=variants, num_seeds=a.seeds,
                                      processor_params=processor_params, frame_shape=shape,
                                      frame_stack=a.frame_stack)
  update = jax.jit(functools.partial(natural_learning.update, model=model, optimizer=optimizer,
                                     variants=variants, hinge=a.hinge, sigma=a.sigma,
                                     loss=a.loss))
  encode_fn = natural_net.make_encode_fn(1, a.latent, a.map_activation, a.slot_embedding)
  rng = np.random.default_rng(5)
  done, last, train_s = 0, {}, 0.0
  for target in steps:
    t = time.perf_counter()
    while done < target:
      if a.window:
        i = []
        for _ in range(a.windows_per_batch):
          pool = episode_index[rng.integers(len(episode_index))]
          first = rng.integers(max(len(pool) - a.window, 0) + 1)
          span = pool[first:first + a.window]
          n = a.batch // a.windows_per_batch
          i.append(rng.choice(span, n, replace=len(span) < n))
        i = np.concatenate(i)
      elif a.same_episode:
        pool = episode_index[rng.integers(len(episode_index))]
        i = rng.choice(pool, a.batch, replace=len(pool) < a.batch)
      else:
        i = rng.choice(len(frames_t), a.batch, replace=False)
      state, last = update(state, {'frame_t': frames_t[i], 'action': actions[i],
                                   'frame_tp1': frames_tp1[i]})
      done += 1
    jax.block_until_ready(state.params)
    train_s += time.perf_counter() - t
    f1, spread, slots = {v: [] for v in variants}, {v: [] for v in variants}, {}
    encoder = jax.device_get(state.params['encoder'])
    for v in variants:
      slots[v] = []
      for s in range(a.seeds):
        m = lockstep.model_index(variants, a.seeds, v, s)
        params = jax.tree_util.tree_map(lambda x, m=m: np.asarray(x[m]), encoder)
        score, emb, slot_f1 = probe_f1(encode_fn, params, s)
        f1[v].append(score)
        spread[v].append(float(emb.std(axis=0).mean()))
        slots[v].append(slot_f1)
    energies = {k: [round(float(x), 5) for x in np.asarray(last[k])]
                for k in ('positive_energy', 'negative_energy')} if last else {}
    one = lambda d: d[variants[0]] if len(variants) == 1 else d  # the old one-variant lines
    print(json.dumps({'step': done, 'probe_f1': one(f1),
                      'emb_std': one({v: [f'{x:.2e}' for x in spread[v]] for v in variants}),
                      **energies, 'train_s': round(train_s, 1),
                      'wall_s': round(time.perf_counter() - start, 1),
                      **({'per_slot': one({v: by_slot(slots[v]) for v in variants})}
                         if a.per_slot else {})}), flush=True)


if __name__ == '__main__':
  main()
