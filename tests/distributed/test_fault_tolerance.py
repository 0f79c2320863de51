"""What survives what, on real Ray (127.0.0.1), real Reverb, real ALE and real Orbax.

TestLocal (one local Ray, one collected run): a collector process killed mid-collection, a
learner process killed after it has saved a checkpoint, and a natural learner group started
before its processor export exists (stopping when none comes, proceeding when one does); the
local Ray's nodes on 127.0.0.1. TestCluster (a `ray.cluster_utils.Cluster`: a head without
CPUs and two 2-CPU worker nodes, all on 127.0.0.1): a worker node removed during collection,
and a learner group spanning two nodes joined by `jax.distributed`.
"""

import concurrent.futures
import glob
import json
import os
import re
import shutil
import signal
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ray

GAME = 'pong'
HEADS, EPISODES_PER_HEAD = 4, 2  # 8 episodes: 4 train, 4 validation.
MAX_STEPS = 1000  # Long enough (a random Pong game is ~800 steps) to be killed mid-episode.


def _config(**overrides):
  """The `test` config with long episodes, room for every transition, and `overrides`."""
  from configs import atari as atari_configs
  from rmr_dist import config as config_lib
  c = atari_configs.get_config('test')
  c.env.max_episode_steps = MAX_STEPS
  c.heads.num_heads, c.heads.episodes_per_head = HEADS, EPISODES_PER_HEAD
  c.replay.abstract_max_size = c.replay.natural_max_size = 20_000  # No FIFO eviction.
  for key, value in overrides.items():
    section, field = key.split('.')
    c[section][field] = value
  return config_lib.load_atari_config(c)


def _actors(class_name):
  """This Ray's actor table entries of `class_name` (ActorID, State, Pid, NumRestarts, ...)."""
  from ray._private import state
  return [a for a in state.actors().values() if a['ActorClassName'] == class_name]


def _node_of(actor):
  """The node ID of an actor table entry (where it runs now, or ran last)."""
  return actor['Address']['NodeID']


def _when_collecting(workdir, action, timeout=120.0):
  """A thread that runs `action()` once the first episode of the run has reached the store."""
  def watch():
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if glob.glob(os.path.join(workdir, 'episodes', GAME, '*', '*.json')):
        action()
        return
      time.sleep(0.02)
  thread = threading.Thread(target=watch, daemon=True)
  thread.start()
  return thread


def _kill_one_collector(record):
  """SIGKILLs the process of one alive collector actor (an episode is in flight)."""
  alive = [a for a in _actors('CollectorWorker') if a['State'] == 'ALIVE' and a['Pid']]
  victim = alive[0]
  os.kill(victim['Pid'], signal.SIGKILL)
  stored = glob.glob(os.path.join(record['workdir'], 'episodes', GAME, '*', '*.json'))
  record.update(actor_id=victim['ActorID'], pid=victim['Pid'], episodes_before=len(stored))


def _check_collection(workdir, summary):
  """Every episode stored exactly once, nothing partial; replay at least once.

  Replay is at-least-once under a lost collector: a process killed while `end_episode` streams
  its episode's items (one abstract, then one natural, per window) leaves a prefix of that
  episode in the tables, and one lost after its items reached Reverb but before its store
  entry was written (or, on a node cut off from Ray, after Ray gave up on it) has the whole
  episode inserted again by the re-run (an episode whose store entry names this collection's
  replay session is skipped instead: `Collector`'s replay_session). Seen: 458 / 457 and
  570 / 570 items against 453. So each table holds at least every train transition's item, and
  the two tables differ by less than one episode's items.
  """
  from rmr_dist.replay import atari_episode_store
  pong = summary['games'][GAME]
  half = HEADS * EPISODES_PER_HEAD // 2
  assert pong['train_episodes'] == half and pong['val_episodes'] == half
  items = pong['replay_items']
  per_episode = -(-MAX_STEPS // _config().replay.transitions_per_item)  # Items per episode.
  assert set(items) == {f'abstract_{GAME}', f'natural_{GAME}'}
  assert min(items.values()) >= pong['train_items']
  assert abs(items[f'abstract_{GAME}'] - items[f'natural_{GAME}']) < per_episode
  store = atari_episode_store.EpisodeStore(os.path.join(workdir, 'episodes'))
  entries = store.entries(GAME, 'val')
  assert sorted((e['head'], e['episode']) for e in entries) == sorted(
      {(e['head'], e['episode']) for e in entries}) and len(entries) == half
  assert sum(e['length'] for e in entries) == pong['val_transitions']
  for e in entries:  # Every stored episode is whole and matches its entry.
    ep = store.read(GAME, 'val', e['head'], e['episode'])
    assert ep.length == e['length'] and len(ep.frames) == len(ep.ram) == e['length'] + 1
  leftovers = [p for p in glob.glob(os.path.join(workdir, 'episodes', '**', '*'),
                                    recursive=True) if os.path.basename(p).startswith('.tmp')]
  assert not leftovers


def _params_digest_at(checkpoint_dir, step):
  """checkpointing.tree_digest of the params stored at `step`, read back through Orbax."""
  import orbax.checkpoint as ocp
  from rmr_dist import checkpointing
  with ocp.StandardCheckpointer() as reader:
    tree = reader.restore(os.path.join(checkpoint_dir, str(step), 'default'))
  return checkpointing.tree_digest(tree['params'])


def _saved_steps(checkpoint_dir):
  """Finalised Orbax checkpoint steps (temporary directories are not digits)."""
  if not os.path.isdir(checkpoint_dir):
    return []
  return sorted(int(d) for d in os.listdir(checkpoint_dir) if d.isdigit())


@pytest.mark.xdist_group('fault_tolerance_local')  # One xdist worker: one shared run.
class TestLocal:
  """One local Ray on 127.0.0.1 and one collected run, shared by the tests of this class."""

  NUM_STEPS, SAVE_EVERY = 80, 10
  # How long the natural group waits for its processor export: long enough for the test to see
  # the wait begin and put the export in place, short enough to wait out once.
  EXPORT_TIMEOUT_S = 8.0

  @pytest.fixture(scope='class')
  def run(self, tmp_path_factory):
    import ray
    from rmr_dist.distributed import atari_program as program_lib
    from rmr_dist.distributed import ray_setup
    config = _config(**{'abstract.models': ('mpnn',), 'abstract.num_steps': self.NUM_STEPS,
                        'abstract.save_every': self.SAVE_EVERY,
                        'abstract.keep_checkpoints': 1000, 'abstract.log_every': 50,
                        'natural.data_fractions': (1.0,)})
    workdir = str(tmp_path_factory.mktemp('local') / 'run')
    ray_setup.init_ray(config.ray)
    program = program_lib.AtariProgram(config, workdir)
    killed = {'workdir': workdir}
    watcher = _when_collecting(workdir, lambda: _kill_one_collector(killed))
    try:
      summary = program.collect()
      watcher.join(timeout=5)
      yield {'config': config, 'workdir': workdir, 'program': program, 'summary': summary,
             'killed': killed}
    finally:
      program.close()
      ray.shutdown()

  def test_the_local_ray_nodes_and_workers_are_on_loopback(self, run):
    """`ray_setup.init_ray` (the programs' local Ray): every node, and a task's worker, on
    127.0.0.1."""
    import ray
    from rmr_dist.distributed import ray_setup
    addresses = ray_setup.node_addresses()
    assert addresses and set(addresses) == {'127.0.0.1'}

    @ray.remote
    def where():
      return ray.util.get_node_ip_address()

    assert ray.get(where.remote()) == '127.0.0.1'

  def test_collector_killed_mid_collection_is_restarted_and_nothing_is_half_written(self, run):
    killed = run['killed']
    assert 'pid' in killed, 'the collector was not killed while collecting'
    assert killed['episodes_before'] < HEADS * EPISODES_PER_HEAD // 2
    victim = next(a for a in _actors('CollectorWorker') if a['ActorID'] == killed['actor_id'])
    assert victim['NumRestarts'] >= 1  # Ray restarted it and re-ran its in-flight episodes.
    _check_collection(run['workdir'], run['summary'])

  def test_learner_killed_after_a_checkpoint_resumes_from_it(self, run):
    from rmr_dist.distributed import learners
    config, paths = run['config'], run['program'].paths
    checkpoints = os.path.join(paths.abstract_unit(GAME, 'mpnn'), 'checkpoints')
    group = learners.LearnerGroup(config, 'abstract', paths)
    try:
      # The learner process got the driver's JAX_PLATFORMS and XLA_FLAGS (2 CPU devices).
      assert group.devices[0]['backend'] == 'cpu'
      assert len(group.devices[0]['local_devices']) == 2
      first_pid = group.info()[0]['pid']
      with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(group.run, 'atari_abstract', GAME, 'mpnn',
                             run['program'].address_for(GAME))
        deadline = time.monotonic() + 120
        while not _saved_steps(checkpoints) and time.monotonic() < deadline:
          time.sleep(0.02)
        saved_before_kill = _saved_steps(checkpoints)
        os.kill(first_pid, signal.SIGKILL)
        row = future.result(timeout=300)
      assert saved_before_kill and saved_before_kill[-1] < self.NUM_STEPS
      assert group.info()[0]['pid'] != first_pid  # A new process finished the unit.
      alive = [a for a in _actors('LearnerWorker') if a['State'] == 'ALIVE']
      assert [a['NumRestarts'] for a in alive] == [1]
    finally:
      group.close()
    resumed = row['resumed_from']
    assert resumed is not None, 'the learner did not restore a checkpoint'
    assert saved_before_kill[-1] <= resumed['step'] < self.NUM_STEPS
    assert resumed['step'] % self.SAVE_EVERY == 0
    # The parameters it resumed with are bit-identical to that checkpoint's.
    assert resumed['params_sha256'] == _params_digest_at(checkpoints, resumed['step'])
    assert row['train_steps'] == self.NUM_STEPS and _saved_steps(checkpoints)[-1] == self.NUM_STEPS
    with open(os.path.join(paths.abstract_unit(GAME, 'mpnn'), 'result.json')) as f:
      assert json.load(f)['resumed_from'] == resumed

  def test_natural_group_times_out_without_the_export_then_waits_for_it_and_proceeds(self, run):
    """A natural learner group started before its processor export exists waits for it: with
    none written within `natural.export_timeout_s` the unit stops with a TimeoutError naming the
    export, raised in the driver as itself (the entry point prints it, no remote traceback);
    with one put in place while it waits, it proceeds and trains."""
    import dataclasses
    from rmr_dist.distributed import learners
    from rmr_dist.learning import atari_abstract as abstract_learning
    from rmr_dist.stages import atari_abstract
    paths = run['program'].paths
    config = dataclasses.replace(run['config'], natural=dataclasses.replace(
        run['config'].natural, export_timeout_s=self.EXPORT_TIMEOUT_S))
    export = paths.processor_export(GAME, config.natural.processor_model)
    if os.path.exists(export):
      shutil.rmtree(export)
    staged = export + '.staged'  # A real export, put in place while the group waits.
    abstract_learning.AbstractLearner(
        atari_abstract.model_spec(config.abstract, 'mpnn'), learning_rate=1e-3, seed=0,
        iterator=iter(()), checkpoint_dir=None, save_every=1, keep=1).export_processor(staged)
    group = learners.LearnerGroup(config, 'natural', paths)
    address = run['program'].address_for(GAME)
    try:
      timeout = self.EXPORT_TIMEOUT_S
      with pytest.raises(TimeoutError,
                         match=re.escape(f'No processor export at {export} after {timeout}s')):
        group.run('atari_natural', GAME, 1.0, address)
      assert len(group.log_lines()[0]) == 1
      with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(group.run, 'atari_natural', GAME, 1.0, address)
        deadline = time.monotonic() + 120
        while len(group.log_lines()[0]) < 2 and time.monotonic() < deadline:
          time.sleep(0.1)
        waiting = group.log_lines()[0]
        assert not future.done()  # Still waiting: nothing to train on yet.
        os.rename(staged, export)
        record = future.result(timeout=300)
    finally:
      group.close()
    assert len(waiting) == 2 and all(
        f'waiting up to {timeout:.0f}s for the processor export at {export}' in line
        for line in waiting)
    assert record['steps'] == config.natural.num_steps and record['identical_batches']
    assert os.path.exists(os.path.join(paths.natural_unit(GAME, 1.0), 'trained.json'))


# Starting Ray's node processes is a fork + exec, which JAX (imported here) warns about anyway.
@pytest.mark.filterwarnings('ignore:os.fork:RuntimeWarning')
@pytest.mark.xdist_group('fault_tolerance_cluster')  # One xdist worker: one shared run.
class TestCluster:
  """A head without CPUs and two 2-CPU worker nodes on 127.0.0.1; one run collected on them."""

  @pytest.fixture(scope='class')
  def run(self, tmp_path_factory):
    import ray
    from ray import cluster_utils
    from rmr_dist.distributed import atari_program as program_lib
    # The learners read the episode store (the test config's source: their processes import no
    # TensorFlow); a learner group reading the driver's Reverb from a cluster: the ssh test.
    config = _config(**{'ray.learner_hosts': 2,
                        'abstract.models': ('mlp',),
                        'abstract.num_steps': 100, 'abstract.save_every': 10,
                        'abstract.keep_checkpoints': 1000, 'abstract.log_every': 50,
                        'natural.variants': ('cswm',)})
    workdir = str(tmp_path_factory.mktemp('cluster') / 'run')
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
        'num_cpus': 0, 'node_ip_address': '127.0.0.1', 'include_dashboard': False,
        # Notice a lost node within ~1 s (the defaults take tens of seconds).
        '_system_config': {'health_check_initial_delay_ms': 0, 'health_check_period_ms': 200,
                           'health_check_timeout_ms': 200, 'health_check_failure_threshold': 3}})
    workers = [cluster.add_node(num_cpus=2, node_ip_address='127.0.0.1') for _ in range(2)]
    program = None
    try:
      ray.init(address=cluster.address)
      program = program_lib.AtariProgram(config, workdir)
      removed = {'workdir': workdir}

      def remove_a_collectors_node():
        alive = [a for a in _actors('CollectorWorker') if a['State'] == 'ALIVE']
        node = next(n for n in workers if n.node_id == _node_of(alive[0]))
        removed.update(actor_id=alive[0]['ActorID'], node_id=node.node_id)
        cluster.remove_node(node, allow_graceful=False)

      watcher = _when_collecting(workdir, remove_a_collectors_node)
      summary = program.collect()
      watcher.join(timeout=5)
      yield {'config': config, 'workdir': workdir, 'program': program, 'summary': summary,
             'removed': removed, 'cluster': cluster}
    finally:
      if program is not None:
        program.close()
      ray.shutdown()
      cluster.shutdown()

  def test_collectors_of_a_removed_node_are_rescheduled_and_collection_completes(self, run):
    import ray
    removed = run['removed']
    assert 'node_id' in removed, 'no node was removed during collection'
    nodes = {n['NodeID']: n for n in ray.nodes()}
    assert not nodes[removed['node_id']]['Alive']
    assert {n['NodeManagerAddress'] for n in nodes.values()} == {'127.0.0.1'}
    # Ray restarted the collector on the surviving worker node and re-ran its episodes there.
    victim = next(a for a in _actors('CollectorWorker') if a['ActorID'] == removed['actor_id'])
    assert victim['NumRestarts'] >= 1 and _node_of(victim) != removed['node_id']
    _check_collection(run['workdir'], run['summary'])

  def test_two_host_learner_group_psums_across_processes_and_survives_a_host_death(self, run):
    from rmr_dist.distributed import learners
    config, paths, cluster = run['config'], run['program'].paths, run['cluster']
    cluster.add_node(num_cpus=2, node_ip_address='127.0.0.1')  # Back to two worker nodes.
    cluster.wait_for_nodes()
    checkpoints = os.path.join(paths.abstract_unit(GAME, 'mlp'), 'checkpoints')
    group = learners.LearnerGroup(config, 'abstract', paths)
    try:
      # One process per node (STRICT_SPREAD), 2 forced CPU devices each, one collective.
      nodes = {_node_of(a) for a in _actors('LearnerWorker') if a['State'] == 'ALIVE'}
      assert len(nodes) == 2
      assert [d['process_index'] for d in group.devices] == [0, 1]
      assert all(d['device_count'] == 4 and d['psum_of_ones'] == 4.0 for d in group.devices)
      first_pids = [i['pid'] for i in group.info()]
      with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(group.run, 'atari_abstract', GAME, 'mlp',
                             run['program'].address_for(GAME))
        deadline = time.monotonic() + 120
        while not _saved_steps(checkpoints) and time.monotonic() < deadline:
          time.sleep(0.02)
        saved_before_kill = _saved_steps(checkpoints)
        os.kill(first_pids[1], signal.SIGKILL)  # Host 1 dies; host 0 is stuck in a collective.
        row = future.result(timeout=300)
      # The driver replaced the whole group (new processes, new coordinator) once.
      assert group.restarts == 1
      assert not set(first_pids) & {i['pid'] for i in group.info()}
      assert all(d['psum_of_ones'] == 4.0 for d in group.devices)
    finally:
      group.close()
    assert saved_before_kill and saved_before_kill[-1] < config.abstract.num_steps
    assert row['learner_processes'] == 2 and row['learner_devices'] == 4
    resumed = row['resumed_from']
    assert resumed is not None and saved_before_kill[-1] <= resumed['step']
    assert resumed['params_sha256'] == _params_digest_at(checkpoints, resumed['step'])
    assert row['train_steps'] == config.abstract.num_steps
    assert _saved_steps(checkpoints)[-1] == config.abstract.num_steps
    unit = paths.abstract_unit(GAME, 'mlp')
    assert os.path.isdir(os.path.join(unit, 'processor', 'params'))
    with open(os.path.join(unit, 'result.json')) as f:
      assert json.load(f)['learner_processes'] == 2
    assert 0.0 <= row['bit_f1'] <= 1.0 and np.isfinite(row['slot_acc'])
