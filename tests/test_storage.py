"""The path layer against local paths and a real S3-compatible server (moto) on 127.0.0.1."""

import json
import os

import numpy as np
import pytest

from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib


def _tree_ops(root):
  """The same operations on any root; returns what they observed."""
  storage.write_text(storage.join(root, 'a', 'x.json'), json.dumps({'b': 1}))
  workdir_lib.atomic_write_npz(storage.join(root, 'a', 'y.npz'), v=np.arange(3))
  storage.write_bytes(storage.join(root, 'a', 'sub', 'z.bin'), b'\x00\x01')
  seen = {
      'exists': (storage.exists(storage.join(root, 'a', 'x.json')),
                 storage.exists(storage.join(root, 'a', 'nope'))),
      'isdir': (storage.isdir(storage.join(root, 'a')), storage.isdir(storage.join(root, 'b'))),
      'listdir': storage.listdir(storage.join(root, 'a')),
      'glob': [p[len(root):] for p in storage.glob(storage.join(root, '*', '*.json'))],
      'json': workdir_lib.read_json(storage.join(root, 'a', 'x.json')),
      'missing_json': workdir_lib.read_json(storage.join(root, 'none.json')),
      'npz': workdir_lib.read_npz(storage.join(root, 'a', 'y.npz'))['v'].tolist(),
      'bytes': storage.tree_bytes(storage.join(root, 'a', 'sub')),
  }
  storage.remove_tree(storage.join(root, 'a', 'sub'))
  seen['after_remove'] = storage.listdir(storage.join(root, 'a'))
  return seen


def test_local_paths_and_s3_behave_alike(tmp_path, s3_env):
  local = _tree_ops(str(tmp_path))
  remote = _tree_ops('s3://rmr-test/ops')
  assert local == remote
  assert remote['listdir'] == ['sub', 'x.json', 'y.npz']
  assert remote['glob'] == ['/a/x.json'] and remote['after_remove'] == ['x.json', 'y.npz']
  with pytest.raises(FileNotFoundError, match='s3://rmr-test/ops/none'):
    storage.read_bytes('s3://rmr-test/ops/none')


def test_a_mirror_reads_back_only_a_complete_push(tmp_path, s3_env):
  mirror = storage.Mirror('s3://rmr-test/mirror')
  assert not mirror.complete() and mirror.pull() == mirror.local
  with open(os.path.join(mirror.local, 'one'), 'w') as f:
    f.write('1')
  mirror.push()
  # An upload interrupted before its index: the object is there, the index does not list it.
  storage.write_text('s3://rmr-test/mirror/half', 'partial')
  os.remove(os.path.join(mirror.local, 'one'))
  again = storage.Mirror('s3://rmr-test/mirror')
  assert again.complete() and sorted(os.listdir(again.pull())) == ['one']
  with open(os.path.join(again.local, 'two'), 'w') as f:
    f.write('2')
  os.remove(os.path.join(again.local, 'one'))
  again.push()  # 'one' is no longer in the index, and its object is deleted.
  assert again.index() == ['two']
  assert not storage.exists('s3://rmr-test/mirror/one')


@pytest.mark.parametrize('path,message', [
    ('foo://bucket/run', 'unknown scheme foo://'),
    ('gs://bucket/run', 'scheme gs:// has no backend installed: Please install gcsfs'),
    ('s3:///run', 'no bucket in the URI'),
])
def test_an_unusable_scheme_is_refused_naming_it(tmp_path, test_config, path, message):
  with pytest.raises(config_lib.ConfigError, match=message) as e:
    workdir_lib.open_workdir(path, test_config, workdir_lib.ATARI_STAGES)
  assert f'--workdir={path}' in str(e.value)


def test_a_bucket_the_server_does_not_have_is_refused_naming_it(test_config, s3_env):
  with pytest.raises(config_lib.ConfigError,
                     match=r"--workdir=s3://no-such-bucket/run: bucket 'no-such-bucket' does "
                           r'not exist at http://127\.0\.0\.1:\d+'):
    workdir_lib.open_workdir('s3://no-such-bucket/run', test_config, workdir_lib.ATARI_STAGES)


def test_a_work_directory_on_s3_is_created_and_reopened(test_config, s3_env):
  paths = workdir_lib.open_workdir('s3://rmr-test/wd/', test_config, workdir_lib.ATARI_STAGES)
  assert paths.root == 's3://rmr-test/wd'
  assert paths.path('report') == 's3://rmr-test/wd/report'
  assert storage.listdir(paths.root) == ['config.json', 'data.json']
  again = workdir_lib.WorkDir.reopen(paths.root, workdir_lib.ATARI_STAGES)
  assert again.fingerprints == paths.fingerprints


def test_an_object_store_work_directory_refuses_multi_host_learners(test_config, s3_env):
  import dataclasses
  config = dataclasses.replace(test_config, ray=dataclasses.replace(test_config.ray,
                                                                    learner_hosts=2))
  with pytest.raises(config_lib.ConfigError, match=r'ray\.learner_hosts=2: .* shared file system'):
    workdir_lib.open_workdir('s3://rmr-test/multi', config, workdir_lib.ATARI_STAGES)
