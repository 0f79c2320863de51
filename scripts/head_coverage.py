"""How much of the console RAM random heads vs trained (checkpoint) heads visit, per game.

  PYTHONPATH=. python scripts/head_coverage.py --workdir=/tmp/agent_runs/pong_local \
      --games=pong --config=local

Plays the config's head family (`heads.num_heads` heads x `heads.episodes_per_head` episodes,
episodes capped at `env.max_episode_steps`, seeded as the collectors seed them) twice per game:
once over the `random` base policy, once over the agent stage's checkpoints in `--workdir`
(`agent/<game>/policy_*`, head i of N from checkpoint round(i (K-1)/(N-1))). Same heads, same
budget; only the base policy differs. Prints, per game and kind: transitions, mean return,
per-head mean returns, distinct RAM states (and per 1,000 transitions), and the number of RAM
slots whose value entropy over the data exceeds 0.6 nats (the slots Table 2 scores,
`rmr_dist.evaluation.atari_metrics.high_entropy_slots`). Writes the rows to --out as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import atari as atari_configs  # noqa: E402
from rmr_dist import config as config_lib  # noqa: E402
from rmr_dist.acting import atari_collector as collector_lib  # noqa: E402
from rmr_dist.acting import atari_heads as heads_lib  # noqa: E402
from rmr_dist.acting import atari_policies  # noqa: E402
from rmr_dist.envs import atari  # noqa: E402
from rmr_dist.evaluation import atari_metrics  # noqa: E402
from rmr_dist.stages import atari_agent  # noqa: E402


def play(config: config_lib.AtariConfig, game: str, base) -> dict:
  """Every (head, episode) of the config's budget for `game`; RAM of every step and returns."""
  h = config.heads
  specs = heads_lib.specs_for(h, config.seed)
  env = atari.AtariEnv(game, frame_skip=config.env.frame_skip,
                       repeat_action_probability=config.env.repeat_action_probability,
                       max_episode_steps=config.env.max_episode_steps,
                       noop_max=config.env.noop_max, read_frames=False)
  rams, returns = [], {}
  for unit in collector_lib.make_work_units([game], h.num_heads, h.episodes_per_head):
    env_seq, head_seq = collector_lib.episode_seed(config.seed, game, unit.head,
                                                   unit.episode).spawn(2)
    head = heads_lib.Head(specs[unit.head], atari_policies.policy_for(base, game, unit.head))
    head.begin_episode(np.random.default_rng(head_seq))
    obs = env.reset(int(env_seq.generate_state(1)[0]))
    rams.append(obs.ram)
    total = 0.0
    while True:
      result = env.step(head.act(obs))
      obs = result.observation
      rams.append(obs.ram)
      total += result.reward
      if result.terminal or result.truncated:
        break
    returns.setdefault(unit.head, []).append(total)
  return {'ram': np.stack(rams), 'returns': returns}


def coverage_row(game: str, kind: str, data: dict) -> dict:
  ram = data['ram']  # [T, 128] uint8
  distinct = len({r.tobytes() for r in ram})
  head_returns = {h: float(np.mean(v)) for h, v in sorted(data['returns'].items())}
  return {'game': game, 'kind': kind, 'transitions': int(len(ram)),
          'mean_return': float(np.mean([x for v in data['returns'].values() for x in v])),
          'head_returns': head_returns, 'distinct_ram_states': distinct,
          'distinct_per_1k': 1000.0 * distinct / len(ram),
          'slots_entropy_gt_0.6': int(atari_metrics.high_entropy_slots(ram).sum())}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True, help='a work directory whose agent stage ran')
  parser.add_argument('--games', default='pong', help='comma-separated games')
  parser.add_argument('--config', default='local', help='configs/atari.py variant')
  parser.add_argument('--out', default='', help='JSON output (default <workdir>/coverage.json)')
  args = parser.parse_args()
  config = config_lib.load_atari_config(atari_configs.get_config(args.config))
  games = args.games.split(',')
  rows = []
  for game in games:
    ckpt_heads = dataclasses.replace(config.heads, base_policy='checkpoint',
                                     checkpoint_path=config_lib.AGENT_CHECKPOINTS)
    checkpoints = atari_agent.resolve_checkpoints(ckpt_heads, [game], args.workdir)
    for kind, base in (('random', atari_policies.RandomPolicy()),
                       ('trained', atari_policies.make_policy(ckpt_heads, checkpoints))):
      start = time.perf_counter()
      row = coverage_row(game, kind, play(config, game, base))
      row['seconds'] = time.perf_counter() - start
      if kind == 'trained':
        row['checkpoints'] = [os.path.basename(p) for p in checkpoints[game]]
      rows.append(row)
  print(f'{config.heads.num_heads} heads x {config.heads.episodes_per_head} episodes per game, '
        f'episodes capped at {config.env.max_episode_steps} steps (config {args.config}).')
  print('| game | heads | transitions | mean return | distinct RAM states (per 1k) | '
        'slots H > 0.6 nats |')
  print('|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["game"]} | {r["kind"]} | {r["transitions"]} | {r["mean_return"]:.2f} | '
          f'{r["distinct_ram_states"]} ({r["distinct_per_1k"]:.0f}) | '
          f'{r["slots_entropy_gt_0.6"]} |')
  for r in rows:
    print(f'{r["game"]} {r["kind"]} per-head mean return: ' +
          ', '.join(f'{h}: {v:.1f}' for h, v in r['head_returns'].items()))
  out = args.out or os.path.join(args.workdir, 'coverage.json')
  with open(out, 'w') as f:
    json.dump(rows, f, indent=1)
  print(f'wrote {out}')


if __name__ == '__main__':
  main()
