"""The agent stage's outputs: where its checkpoints live, its return curve, and which checkpoint
each policy head acts from.

The stage itself (collector actors + learner, Ray) is `rmr_dist.distributed.atari_agent`; this
module holds what needs no Ray, so the collectors and the tests use it too. Per game it writes

  agent/<game>/policy_<update>/   RamQNetwork policies (`checkpointing.save_policy`), from the
                                  untrained network (update 0) to the last update
  agent/<game>/returns.csv        one row per training episode: env_steps, actor, return,
                                  length, epsilon, params_version, wall_s
  agent/<game>/returns.png        episode return and length vs agent steps (moving means)
  agent/<game>/result.json        the summary; its presence marks the game done (resume)

Heads from checkpoints: head i of N acts from checkpoint `head_checkpoint_index(i, N, K)` =
round(i * (K - 1) / (N - 1)) of the K checkpoints in training order. Head 0 (the most
exploratory, Ape-X) plays the untrained network, head N-1 (the greediest) the last one, and
the heads between them the checkpoints between: skill and greed rise together, from weak to
the best policy trained, as among the Agent57 heads whose data the paper uses.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.acting import atari_policies

head_checkpoint_index = atari_policies.head_checkpoint_index  # Re-exported (module docstring).

_POLICY_DIR = re.compile(r'^policy_(\d+)$')
RETURN_COLUMNS = ('env_steps', 'actor', 'return', 'length', 'epsilon', 'params_version',
                  'wall_s')


def game_dir(workdir: workdir_lib.WorkDir, game: str) -> str:
  """agent/<game>/ of a work directory."""
  return workdir.path('agent', game)


def policy_dir(directory: str, update: int) -> str:
  return os.path.join(directory, f'policy_{update}')


def list_checkpoints(directory: str) -> list[str]:
  """The `policy_<update>` directories under `directory`, by update (training order)."""
  if not os.path.isdir(directory):
    return []
  found = [(int(m.group(1)), name) for name in os.listdir(directory)
           if (m := _POLICY_DIR.match(name)) and os.path.isdir(os.path.join(directory, name))]
  return [os.path.join(directory, name) for _, name in sorted(found)]


def resolve_checkpoints(heads: config_lib.HeadsConfig, games: Sequence[str],
                        workdir_root: str) -> dict[str, list[str]]:
  """{game: checkpoint paths in training order} that `heads.checkpoint_path` names.

  'agent' -> `<workdir>/agent/<game>/policy_*`; a directory with `<game>/policy_*` or
  `policy_*` inside -> those; else the path itself (one checkpoint for every head).

  Raises:
    ConfigError: 'agent' (or a directory of per-game checkpoints) lacks a game's checkpoints.
  """
  path = heads.checkpoint_path
  out = {}
  for game in games:
    if path == config_lib.AGENT_CHECKPOINTS:
      found = list_checkpoints(os.path.join(workdir_root, 'agent', game))
      if not found:
        raise config_lib.ConfigError(
            f"heads.checkpoint_path='agent' but {workdir_root}/agent/{game}/ holds no policy "
            'checkpoints: run the agent stage first (--stages=agent,collect,...).')
    elif os.path.isdir(os.path.join(path, game)):
      found = list_checkpoints(os.path.join(path, game))
    else:
      found = list_checkpoints(path) or [path]
    if not found:
      raise config_lib.ConfigError(f'heads.checkpoint_path={path!r}: no policy checkpoints '
                                   f'for game {game!r} under {os.path.join(path, game)}.')
    out[game] = found
  return out


def write_returns(directory: str, rows: Sequence[dict[str, Any]], title: str) -> None:
  """returns.csv and returns.png: episode return (top) and length (bottom; longer rallies
  show learning before points are won) against agent steps, with moving means of 10."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=RETURN_COLUMNS)
  writer.writeheader()
  for row in rows:
    writer.writerow({k: row[k] for k in RETURN_COLUMNS})
  workdir_lib.atomic_write_text(os.path.join(directory, 'returns.csv'), buf.getvalue())
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(6, 6))
  FigureCanvasAgg(fig)
  steps = np.array([r['env_steps'] for r in rows], float)
  for panel, (key, label) in enumerate((('return', 'episode return'),
                                        ('length', 'episode length (agent steps)'))):
    ax = fig.add_subplot(2, 1, panel + 1)
    values = np.array([r[key] for r in rows], float)
    ax.plot(steps, values, '.', alpha=0.5, label='episode')
    if len(rows) >= 2:
      k = min(10, len(rows))
      mean = np.convolve(values, np.ones(k) / k, mode='valid')
      ax.plot(steps[k - 1:], mean, '-', label=f'mean of {k}')
    ax.set_ylabel(label)
    ax.legend()
    if panel == 0:
      ax.set_title(title)
  ax.set_xlabel('agent steps (all actors)')
  fig.tight_layout()
  out = io.BytesIO()
  fig.savefig(out, format='png', dpi=100)
  storage.write_bytes(os.path.join(directory, 'returns.png'), out.getvalue())


def curve_points(rows: Sequence[dict[str, Any]], num_points: int = 8) -> list[dict[str, float]]:
  """The return curve in `num_points` bins of consecutive episodes: mean env_steps, return and
  episode length."""
  if not rows:
    return []
  out = []
  for chunk in np.array_split(np.arange(len(rows)), min(num_points, len(rows))):
    out.append({'env_steps': float(np.mean([rows[i]['env_steps'] for i in chunk])),
                'mean_return': float(np.mean([rows[i]['return'] for i in chunk])),
                'mean_length': float(np.mean([rows[i]['length'] for i in chunk])),
                'episodes': int(len(chunk))})
  return out
