"""The bouncing-balls report stage: balls.csv, balls.md, the two rollout figures and the
per-seed figure (natural_seeds.png).

Reads the abstract and natural results of the current fingerprints; balls.md ends with the
stage fingerprints it came from.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import balls_report


def run(config: config_lib.BallsConfig, workdir: workdir_lib.WorkDir,
        logger: logging_lib.Logger | None = None,
        say: Callable[[str], None] = print) -> dict[str, str]:
  """Writes the report from the finished stages; returns {file name: path}.

  Raises:
    ConfigError: neither the abstract nor the natural stage has a result.
  """
  results, dirs = {}, {}
  for stage in ('abstract', 'natural'):
    dirs[stage] = workdir.stage_dir(stage)
    result = workdir_lib.read_json(storage.join(dirs[stage], 'result.json'))
    if result is not None:
      results[stage] = result
  if not results:
    raise config_lib.ConfigError(f'Nothing to report in {workdir.root}: run the abstract '
                                 '(and natural) stages first.')
  rows = balls_report.rows(results.get('abstract'), results.get('natural'), config.seed)
  paths = dict(balls_report.write_tables(workdir.report, rows))
  last = 'natural' if 'natural' in results else 'abstract'
  prints = ', '.join(f'{k} {v}' for k, v in workdir.stage_fingerprints(last).items())
  text = storage.read_text(paths['balls.md'])
  span = results.get('natural', {}).get('latent_outside_abstract_span')
  if span:
    text += balls_report.span_markdown(span, config.abstract.latent_size,
                                       2 * config.data.history)
  text += f'\nFrom {workdir.root}, stage fingerprints: {prints}.\n'
  workdir_lib.atomic_write_text(paths['balls.md'], text)
  history = config.data.history
  if 'abstract' in results:
    with np.load(io.BytesIO(storage.read_bytes(storage.join(dirs['abstract'], 'rollout_example.npz')))) as f:
      paths['abstract_rollout.png'] = balls_report.plot_abstract_rollout(
          storage.join(workdir.report, 'abstract_rollout.png'), f['predicted'], f['true'],
          history, results['abstract']['rollout_mse'])
  if 'natural' in results:
    with np.load(io.BytesIO(storage.read_bytes(storage.join(dirs['natural'], 'rollout_example.npz')))) as f:
      example = {k: f[k] for k in f.files}
    paths['natural_rollout.png'] = balls_report.plot_natural_rollout(
        storage.join(workdir.report, 'natural_rollout.png'), example, history,
        tuple(results['natural']['mse']))
    paths['natural_seeds.png'] = balls_report.plot_seed_pairs(
        storage.join(workdir.report, 'natural_seeds.png'), rows)
  if logger is not None:
    logger.text('eval/balls', text)
    for name in ('abstract_rollout.png', 'natural_rollout.png', 'natural_seeds.png'):
      if name in paths:
        logger.image(f'eval/{name[:-4]}', paths[name])
  say(f'report: {paths["balls.csv"]}\n{text}')
  return paths
