"""The Ray program on a real local Ray (127.0.0.1), and the entry point's command line."""

import json
import os
import socket
import subprocess
import sys
import threading

import psutil
import pytest

from rmr_dist import workdir as workdir_lib
from tests.conftest import REPO

pytestmark = pytest.mark.ray


def _atari(*args, timeout=300, env=None):
  env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER='0', **(env or {}))
  return subprocess.run([sys.executable, os.path.join(REPO, 'atari.py'), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)


def _listening_sockets(root_pid: int) -> set[tuple[int, str, str, int, str]]:
  """(pid, process name, ip, port, kind) of every TCP socket in LISTEN and every bound UDP
  socket held by `root_pid` or any of its descendants (the driver, and the Ray processes and
  workers it starts). One read of the system's socket tables per call (psutil's per-process
  reads parse them once per process: several times the CPU, sampled every second of a run)."""
  try:
    root = psutil.Process(root_pid)
    tree = {p.pid: p for p in [root, *root.children(recursive=True)]}
  except psutil.NoSuchProcess:
    return set()
  found = set()
  for conn in psutil.net_connections(kind='inet'):
    process = tree.get(conn.pid)
    if process is None:
      continue
    try:
      name = process.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
      continue
    if conn.type == socket.SOCK_STREAM and conn.status == psutil.CONN_LISTEN:
      found.add((process.pid, name, conn.laddr.ip, conn.laddr.port, 'tcp'))
    elif conn.type == socket.SOCK_DGRAM and conn.laddr and not conn.raddr:
      found.add((process.pid, name, conn.laddr.ip, conn.laddr.port, 'udp'))
  return found


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _is_loopback(ip: str) -> bool:
  return ip.startswith('127.') or ip in ('::1', '::ffff:127.0.0.1')


@pytest.mark.xdist_group('atari_all_stages')
def test_local_run_listens_on_loopback_but_for_the_in_process_reverb_server(all_stages):
  """README, "Network exposure": in a local run every socket of the driver's process tree
  (collectors and learner groups included) is bound to loopback, except the in-process Reverb
  server's in the driver (Reverb 0.14's `reverb.Server` takes no host and binds every
  interface)."""
  _, proc, _, port, driver_pid, sockets = all_stages
  assert proc.returncode == 0, proc.stderr[-3000:]
  # The sampler saw the run: Ray's GCS and raylet listening, and the Reverb server.
  names = {name for _, name, ip, _, _ in sockets if _is_loopback(ip)}
  assert {'gcs_server', 'raylet'} <= names, sorted(sockets)
  reverb = {s for s in sockets if s[0] == driver_pid and s[3] == port and s[4] == 'tcp'}
  assert reverb, f'no listener on the Reverb port {port} in the driver: {sorted(sockets)}'
  exposed = {s for s in sockets if not _is_loopback(s[2])}
  assert exposed == reverb, f'listening off loopback beyond Reverb: {sorted(exposed - reverb)}'
  assert all(ip in ('::', '0.0.0.0') for _, _, ip, _, _ in reverb), sorted(reverb)


@pytest.mark.xdist_group('atari_all_stages')
def test_collect_stage_end_to_end(all_stages):
  workdir, proc, _, _, _, _ = all_stages
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  with open(os.path.join(workdir, 'collect', 'summary.json')) as f:
    summary = json.load(f)
  pong = summary['games']['pong']
  # test config: 4 heads x 2 episodes, half validation; episodes capped at 40 steps.
  assert pong['train_episodes'] == 4 and pong['val_episodes'] == 4
  assert 0 < pong['train_transitions'] <= 4 * 40
  # Windows of up to 8 transitions: at least one item per 8, at most one more per episode.
  assert 0 < pong['train_transitions'] / 8 <= pong['train_items'] <= (
      pong['train_transitions'] / 8 + pong['train_episodes'])
  assert pong['replay_items'] == {'abstract_pong': pong['train_items'],
                                  'natural_pong': pong['train_items']}
  assert pong['frames_per_s'] > 0
  with open(os.path.join(workdir, 'episodes', 'index.json')) as f:
    index = json.load(f)
  # Every episode (collect.store_all_episodes: the probe set comes from the train ones).
  assert sorted(e['split'] for e in index) == ['train'] * 4 + ['val'] * 4
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(os.path.join(workdir, 'tb')))
  assert os.path.isdir(summary['replay_checkpoint'])
  # Its resume, the replay restored from its checkpoint: the object-store test's second run.


def test_workdir_refuses_other_collection_settings(tmp_path):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'data.json'), 'w') as f:
    json.dump({'games': ['breakout']}, f)
  proc = _atari('--config=configs/atari.py:test', f'--workdir={workdir}')
  assert proc.returncode != 0
  assert 'holds collect data made with other settings' in proc.stderr
  assert "games (recorded ['breakout'], now ['pong'])" in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_workdir_that_is_a_file_fails_before_ray(tmp_path):
  path = tmp_path / 'a-file'
  path.write_text('not a directory')
  proc = _atari('--config=configs/atari.py:test', f'--workdir={path}', timeout=120)
  assert proc.returncode != 0
  assert f'--workdir={path} is an existing file' in proc.stderr
  assert 'Traceback' not in proc.stderr and 'Started a local Ray' not in proc.stderr


@pytest.mark.parametrize('workdir,message', [
    ('foo://bucket/run', '--workdir=foo://bucket/run: unknown scheme foo://'),
    ('s3://no-such-bucket/run', "bucket 'no-such-bucket' does not exist at http://127.0.0.1:"),
])
def test_unusable_workdir_uri_fails_before_ray(s3_server, workdir, message):
  proc = _atari('--config=configs/atari.py:test', f'--workdir={workdir}', '--stages=collect',
                timeout=120, env=s3_server)
  assert proc.returncode != 0
  assert message in proc.stderr, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr and 'Started a local Ray' not in proc.stderr
  assert not os.path.exists(os.path.join(REPO, workdir.split(':')[0] + ':'))


def test_missing_policy_checkpoint_fails_in_the_driver(tmp_path):
  proc = _atari('--config=configs/atari.py:test', f'--workdir={tmp_path}/w',
                '--config.heads.base_policy=checkpoint',
                '--config.heads.checkpoint_path=/missing', timeout=120)
  assert proc.returncode != 0
  assert "heads.checkpoint_path='/missing' is not a usable policy checkpoint" in proc.stderr
  assert 'Traceback' not in proc.stderr and 'Started a local Ray' not in proc.stderr


@pytest.mark.parametrize('args,message', [
    (['--config.games=("pongg",)'], "Unknown game 'pongg'"),
    (['--config.heads.num_headz=3'], "config.heads has no key 'num_headz'"),
    (['--config=configs/atari.py:tset'], "Unknown atari config variant 'tset'"),
    (['--stages=collect,trian'], "Unknown stage(s) ['trian']"),
    (['--config.env.frame_skip=0'], 'config.env.frame_skip=0'),
    # More 1-CPU actors than the local Ray's 2 CPUs: refused before Ray starts, not left
    # waiting forever.
    (['--stages=collect', '--config.collect.num_collectors=3'],
     'collect.num_collectors=3: each of these actors reserves 1 CPU'),
    (['--stages=agent', '--config.agent.num_actors=3'],
     'agent.num_actors=3: each of these actors reserves 1 CPU'),
])
def test_bad_command_line_fails_fast_with_a_clear_message(tmp_path, args, message):
  proc = _atari('--config=configs/atari.py:test', f'--workdir={tmp_path}/w', *args, timeout=120)
  assert proc.returncode != 0
  assert message in proc.stderr, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr and 'Started a local Ray' not in proc.stderr


def _listing(root):
  """The files under a work directory, with the names that differ between any two runs (Orbax's
  content-addressed data files, TensorBoard event files, Reverb's timestamped checkpoint)
  normalised, less the copy indexes that only an object-store work directory has."""
  import re
  from rmr_dist import storage
  out = set()
  for path in storage.walk_files(root):
    rel = path[len(root) + 1:]
    if rel.endswith(storage.MIRROR_INDEX):
      continue
    rel = re.sub(r'/d/[0-9a-f]{32}$', '/d/<data>', rel)
    rel = re.sub(r'events\.out\.tfevents\.[^/]*$', '<events>', rel)
    out.add(re.sub(r'/\d{4}-\d\d-\d\dT[^/]*/', '/<checkpoint>/', rel))
  return sorted(out)


# The all-stages runs: the test config with its learners reading Reverb (the config's own
# learners read the episode store).
ALL_STAGES_ARGS = ('--config=configs/atari.py:test', '--config.replay.learner_source=reverb')


@pytest.fixture(scope='module')
def all_stages(tmp_path_factory):
  """(work directory, completed process, listing right after it, Reverb port, driver pid,
  listening sockets) of one local run of every stage, shared by the tests marked
  xdist_group('atari_all_stages') (one xdist worker runs them). While it runs, the listening
  sockets of the driver's process tree are sampled every second (`_listening_sockets`)."""
  workdir = str(tmp_path_factory.mktemp('all_stages') / 'run')
  port = _free_port()
  env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER='0')
  proc = subprocess.Popen(
      [sys.executable, os.path.join(REPO, 'atari.py'), *ALL_STAGES_ARGS, f'--workdir={workdir}',
       '--stages=collect,abstract,natural,probe,report', f'--config.replay.port={port}'],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  sockets = set()
  done = threading.Event()

  def sample():
    while not done.wait(1.0):
      sockets.update(_listening_sockets(proc.pid))

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  try:
    stdout, stderr = proc.communicate(timeout=600)
  finally:
    done.set()
    sampler.join()
    proc.kill()
  completed = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
  listing = _listing(workdir) if proc.returncode == 0 else None
  return workdir, completed, listing, port, proc.pid, sockets


@pytest.mark.xdist_group('atari_all_stages')
def test_all_stages_write_tables(all_stages):
  workdir, proc, _, _, _, _ = all_stages
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  import csv
  with open(os.path.join(workdir, 'report', 'table2.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [(r['game'], r['model']) for r in rows] == [
      ('pong', 'copy'), ('pong', 'mlp'), ('pong', 'deepsets'), ('pong', 'mpnn')]
  for r in rows:
    assert 0.0 <= float(r['slot_acc']) <= 1.0 and 0.0 <= float(r['bit_f1']) <= 1.0
    assert int(r['n_eval_transitions']) > 0
  assert os.path.exists(os.path.join(workdir, 'report', 'table2.md'))
  first = workdir_lib.WorkDir.reopen(workdir, workdir_lib.ATARI_STAGES)
  for model in ('mlp', 'deepsets', 'mpnn'):
    assert os.path.isdir(first.processor_export('pong', model))
  # Table 1: one row per game with the test config's 2 seeds, from lockstep-trained models.
  with open(os.path.join(workdir, 'report', 'table1.csv')) as f:
    t1 = list(csv.DictReader(f))
  assert [r['game'] for r in t1] == ['pong'] and t1[0]['n_seeds'] == '2'
  for key in ('cswm_f1_mean', 'rmr_f1_mean'):
    assert 0.0 <= float(t1[0][key]) <= 1.0
  with open(os.path.join(workdir, 'report', 'results.json')) as f:
    per_seed = json.load(f)['table1']['pong']['per_seed']
  assert len(per_seed['rmr']) == len(per_seed['cswm']) == 2
  for fraction in (0.5, 1.0):
    with open(os.path.join(first.natural_unit('pong', fraction), 'trained.json')) as f:
      assert json.load(f)['identical_batches'] is True
  for name in ('table1.md', 'table1_probe_f1.png', 'data_efficiency.csv', 'data_efficiency.png'):
    assert os.path.getsize(os.path.join(workdir, 'report', name)) > 0


def test_abstract_stage_without_collect_fails_clearly(tmp_path):
  proc = _atari('--config=configs/atari.py:test', f'--workdir={tmp_path}/w', '--stages=abstract')
  assert proc.returncode != 0
  assert "needs the collect stage's outputs" in proc.stderr
  assert 'Traceback' not in proc.stderr


@pytest.mark.xdist_group('atari_all_stages')
def test_all_stages_on_s3_write_the_files_of_a_local_run_and_reuse_upstream_stages(
    all_stages, s3_server, monkeypatch):
  """Every stage with --workdir=s3://... on a real S3-compatible server (moto, 127.0.0.1), in two
  runs: collect, abstract and natural; then every stage again, where the collect stage is not
  repeated and the replay is restored from the copied Reverb checkpoint, the collected data, the
  abstract units and the natural models are read back from the bucket, and only probe and report
  run. The bucket then holds the files of the local run. (Two runs on the object store serve
  these checks: the whole-program runs are the suite's slowest tests. A natural group that waits
  for a missing processor export, then times out: test_fault_tolerance.py; a later stage's
  change keeping upstream fingerprints: tests/test_workdir.py.)"""
  import csv
  import uuid
  from rmr_dist import storage
  _, local, local_listing, _, _, _ = all_stages
  assert local.returncode == 0, local.stderr[-3000:]
  workdir = f's3://rmr-test/run-{uuid.uuid4().hex[:8]}'
  args = (*ALL_STAGES_ARGS, f'--workdir={workdir}')
  upstream_run = _atari(*args, '--stages=collect,abstract,natural', timeout=600, env=s3_server)
  assert upstream_run.returncode == 0, upstream_run.stdout[-3000:] + upstream_run.stderr[-3000:]
  assert f'Outputs in {workdir};' in upstream_run.stdout
  assert not os.path.exists(os.path.join(REPO, 's3:'))  # Not a local directory named 's3:'.
  for key, value in s3_server.items():
    monkeypatch.setenv(key, value)
  first = workdir_lib.WorkDir.reopen(workdir, workdir_lib.ATARI_STAGES)
  upstream = [first.collect_summary] + [
      storage.join(first.abstract_unit('pong', m), 'result.json')
      for m in ('copy', 'mlp', 'deepsets', 'mpnn')] + [
          storage.join(first.natural_unit('pong', f), 'trained.json') for f in (0.5, 1.0)]
  before = [storage.read_text(p) for p in upstream]

  again = _atari(*args, timeout=600, env=s3_server)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  assert 'collect: already complete' in again.stdout
  assert 'successfully loaded' in again.stderr.lower()
  for stage in ('abstract', 'natural'):
    assert f'{stage}: learner group' not in again.stdout, again.stdout[-3000:]
  assert 'probe: learner group' in again.stdout
  assert [storage.read_text(p) for p in upstream] == before
  second = workdir_lib.WorkDir.reopen(workdir, workdir_lib.ATARI_STAGES)
  for stage in ('collect', 'abstract', 'natural'):
    assert second.fingerprints[stage] == first.fingerprints[stage]
  listing = _listing(workdir)
  assert listing == local_listing
  assert 'report/table1_probe_f1.png' in listing and 'replay/<checkpoint>/DONE' in listing
  rows = list(csv.DictReader(storage.read_text(f'{workdir}/report/table2.csv').splitlines()))
  assert [(r['game'], r['model']) for r in rows] == [
      ('pong', 'copy'), ('pong', 'mlp'), ('pong', 'deepsets'), ('pong', 'mpnn')]
  assert storage.exists(second.probe_result('pong', 1.0))
  assert f'probe {second.fingerprints["probe"]}' in storage.read_text(
      f'{workdir}/report/table1.md')
  assert f'abstract {first.fingerprints["abstract"]}' in storage.read_text(
      f'{workdir}/report/table2.md')
