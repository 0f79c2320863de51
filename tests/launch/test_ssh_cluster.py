"""`ray up` / `ray submit` / `ray down` of launch/local-cluster.yaml over real SSH on 127.0.0.1.

Marked `ssh`. Needs root, OpenSSH (sshd, ssh, ssh-keygen), rsync and util-linux (unshare,
nsenter, setpriv, mount); `.ci/run` installs missing packages with CI=true as root. Without them
the test skips and names what is missing, except with CI=true, where it fails instead.

The test starts its own sshd (key authentication only, `ListenAddress 127.0.0.1`, port 22) as
PID 1 of fresh network, PID and mount namespaces, and runs the `ray` commands inside them:

* network: a private loopback, so sshd on 127.0.0.1:22 and the head's GCS on 6379 and dashboard
  on 8265 (the committed ports) cannot clash with the host's or other tests' Ray instances, and
  no traffic can leave 127.0.0.1;
* PID: the `ray stop` of the head start commands and of `ray down` (it stops every Ray process
  it can see) sees only this cluster, and killing sshd at the end kills every process the
  cluster started, so nothing survives the test, even a failed one;
* mount: the SSH user's home is a fresh directory under tmp_path (this Python installation is
  bound into it), so `~/rmr_dist`, `~/rmr-venv`, `~/.bashrc` and `~/ray_bootstrap_config.yaml`
  are the test's; /tmp/ray is private too, so the cluster's `ray_current_cluster` file and the
  local provider's state cannot redirect a bare `ray.init()` elsewhere on the machine.

The cluster config is launch/local-cluster.yaml as committed; only auth is overridden:
auth.ssh_user is the user running the test (root) and auth.ssh_private_key a key made for it.
Everything else runs as committed: file mounts (rsync of this repository to ~/rmr_dist), the
setup commands, `ray stop` and `ray start --head --node-ip-address=127.0.0.1 --port=6379 ...`.

What an administrator would have provisioned on a real host is in the SSH user's home instead:
~/.bashrc puts this Python 3.11 first on PATH and sets RAY_USAGE_STATS_ENABLED=0;
~/.config/pip/pip.conf keeps pip offline (no index, no build isolation); and ~/rmr-venv exists,
seeing the stack the tests run with (`add_test_stack`: from a virtualenv as well as from a base
interpreter), plus the `ray` entry point that installing ray into it would write. So the committed venv step is a no-op and the committed
`pip install -c constraints.txt -e ~/rmr_dist ...` installs only rmr_dist, from the synced copy.

Then `ray submit ... atari.py --config=configs/atari.py:test --workdir=W
--config.ray.address=auto --stages=collect,abstract,report` (one learned abstract model) runs
the collectors and a learner group (reading the driver's Reverb server) on the cluster; the
natural and probe stages place their learner groups the same way and run in the local
all-stages tests. The test checks that it exits 0, that the driver joined the cluster's Ray
session, that W holds the report, and that `ray down` leaves no Ray process behind.
"""

import csv
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.ssh

IN_CI = os.environ.get('CI') == 'true'
_SBIN = ('/usr/sbin', '/usr/local/sbin', '/sbin')

# Runs inside the fresh namespaces as their PID 1: loopback up, the test home over the real one,
# a private /tmp/ray, then sshd in the foreground (its death ends the namespace).
_BOOT = r'''
import fcntl, json, os, socket, struct, subprocess, sys
spec = json.loads(sys.argv[1])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # ip link set lo up
  flags = struct.unpack('16sh22x', fcntl.ioctl(s, 0x8913, struct.pack('16sh22x', b'lo', 0)))[1]
  fcntl.ioctl(s, 0x8914, struct.pack('16sh22x', b'lo', flags | 1))
for src, dst in spec['binds']:
  subprocess.run([spec['mount'], '--bind', src, dst], check=True)
subprocess.run([spec['mount'], '--rbind', spec['home_src'], spec['home']], check=True)
subprocess.run([spec['mount'], '--bind', spec['ray_tmp'], '/tmp/ray'], check=True)
os.makedirs('/run/sshd', mode=0o755, exist_ok=True)
os.execv(spec['sshd'], [spec['sshd'], '-D', '-e', '-f', spec['config']])
'''

# Lists the Ray processes left in the namespace (read from stdin, so its own command line is clean).
_LEFTOVERS = r'''
import os, psutil
from ray.autoscaler._private.constants import RAY_PROCESSES
left = []
for p in psutil.process_iter(['pid', 'name', 'cmdline']):
  if p.info['pid'] == os.getpid():
    continue
  cmd = ' '.join(p.info['cmdline'] or [])
  if any(k in (p.info['name'] if by_name else cmd) for k, by_name in RAY_PROCESSES):
    left.append(cmd or p.info['name'])
print(left)
'''


def _unavailable(reason: str):
  if IN_CI:
    pytest.fail(f'CI=true, so the ssh test must run, but: {reason} (.ci/run should have provided '
                'it).')
  pytest.skip(reason)


def _which(name: str) -> str | None:
  return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))


def _prerequisites() -> dict[str, str]:
  """The tools the test needs; skips (fails with CI=true) naming whatever is missing."""
  if os.geteuid() != 0:
    _unavailable('needs root (its own sshd, and network/PID/mount namespaces)')
  tools = {n: _which(n) for n in ('sshd', 'ssh', 'ssh-keygen', 'rsync', 'unshare', 'nsenter',
                                  'setpriv', 'mount')}
  tools['ray'] = shutil.which('ray', path=os.path.dirname(sys.executable)) or shutil.which('ray')
  missing = sorted(n for n, p in tools.items() if not p)
  if missing:
    _unavailable(f'missing {", ".join(missing)} (apt-get install openssh-server openssh-client '
                 'rsync)')
  if not os.path.exists(os.path.join(os.path.dirname(sys.executable), 'python3.11')):
    _unavailable(f'no python3.11 next to {sys.executable} for the SSH login shell')
  probe = subprocess.run([tools['unshare'], '--pid', '--fork', '--mount-proc', '--net', 'true'],
                         capture_output=True, text=True)
  if probe.returncode != 0:
    _unavailable(f'cannot create PID/mount/network namespaces: {probe.stderr.strip()}')
  return tools


def add_test_stack(venv: str) -> str:
  """Makes the venv at `venv` see the packages of the interpreter running the tests; returns
  the .pth file written.

  `python -m venv --system-site-packages`, run from inside a virtualenv, links the new venv to
  the *base* interpreter's site-packages, not the virtualenv's, so a stack installed into the
  virtualenv (pytest's, with `wheel` for pip's editable build) would be missing on the node. A
  .pth file in the venv's site-packages adds every site directory of this interpreter with
  `site.addsitedir` (which also runs their own .pth files), after the venv's own packages: so
  the node sees the stack the tests run with, from a virtualenv or a base interpreter alike.
  """
  import site  # pylint: disable=g-import-not-at-top
  dirs = [d for d in site.getsitepackages() if os.path.isdir(d)]
  lib = os.path.join(venv, 'lib', f'python{sys.version_info.major}.{sys.version_info.minor}',
                     'site-packages')
  path = os.path.join(lib, 'zz-rmr-test-stack.pth')
  with open(path, 'w') as f:
    f.write(f'import site; list(map(site.addsitedir, {dirs!r}))\n')
  return path


def test_the_node_venv_sees_the_stack_the_tests_run_with(tmp_path):
  """Without root or sshd: the venv that the cluster test gives the node sees this interpreter's
  site-packages (a virtualenv's too) and imports what the node's pip needs."""
  import site  # pylint: disable=g-import-not-at-top
  venv = str(tmp_path / 'rmr-venv')
  subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', '--without-pip', venv],
                 check=True, timeout=120)
  add_test_stack(venv)
  probe = subprocess.run(
      [os.path.join(venv, 'bin', 'python'), '-c',
       'import json, sys, wheel, setuptools, ray; print(json.dumps(sys.path))'],
      capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=''))
  assert probe.returncode == 0, probe.stderr
  path = json.loads(probe.stdout)
  for d in site.getsitepackages():
    if os.path.isdir(d):
      assert d in path, (d, path)


def _tail(path: str, n: int = 4000) -> str:
  try:
    with open(path, errors='replace') as f:
      return f.read()[-n:]
  except OSError:
    return ''


class _Host:
  """sshd on 127.0.0.1:22 of private namespaces, and a way to run commands inside them."""

  def __init__(self, root, tools):
    self.root = str(root)
    self.tools = tools
    self.user = pwd.getpwuid(os.geteuid()).pw_name
    self.home = pwd.getpwuid(os.geteuid()).pw_dir
    self.home_src = os.path.join(self.root, 'home')
    self.key = os.path.join(self.root, 'id_ed25519')
    self.logs = os.path.join(self.root, 'logs')
    self.ray_tmp = os.path.join(self.root, 'ray-tmp')
    self.cli_tmp = os.path.join(self.root, 'cli-tmp')
    self._proc = None
    self.pid = None

  def _make_home(self):
    os.makedirs(self.logs)
    os.makedirs(self.ray_tmp)
    os.makedirs(self.cli_tmp)
    os.makedirs(os.path.join(self.home_src, '.ssh'), mode=0o700)
    os.chmod(self.home_src, 0o700)
    subprocess.run([self.tools['ssh-keygen'], '-q', '-t', 'ed25519', '-N', '', '-C', 'rmr-ssh-test',
                    '-f', self.key], check=True)
    host_key = os.path.join(self.root, 'ssh_host_ed25519_key')
    subprocess.run([self.tools['ssh-keygen'], '-q', '-t', 'ed25519', '-N', '', '-f', host_key],
                   check=True)
    shutil.copy(self.key + '.pub', os.path.join(self.home_src, '.ssh', 'authorized_keys'))
    os.chmod(os.path.join(self.home_src, '.ssh', 'authorized_keys'), 0o600)
    with open(os.path.join(self.home_src, '.bashrc'), 'w') as f:
      f.write('# Written by tests/launch/test_ssh_cluster.py: this machine\'s Python 3.11 first.\n'
              f'export PATH={os.path.dirname(sys.executable)}:$PATH\n'
              'export RAY_USAGE_STATS_ENABLED=0\n')
    os.makedirs(os.path.join(self.home_src, '.config', 'pip'))
    with open(os.path.join(self.home_src, '.config', 'pip', 'pip.conf'), 'w') as f:
      # pip reads `no-build-isolation = false` as "build isolation off".
      f.write('[global]\nno-index = true\n\n[install]\nno-build-isolation = false\n')
    self.sshd_config = os.path.join(self.root, 'sshd_config')
    with open(self.sshd_config, 'w') as f:
      f.write(f'ListenAddress 127.0.0.1\nPort 22\nHostKey {host_key}\nPidFile none\n'
              'PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n'
              'AuthorizedKeysFile .ssh/authorized_keys\nPasswordAuthentication no\n'
              'KbdInteractiveAuthentication no\nUsePAM no\nX11Forwarding no\n'
              'MaxSessions 50\nMaxStartups 50\nSubsystem sftp internal-sftp\n')
    # Paths under the real home that must stay visible once the test home covers it.
    binds = set()
    for path in (sys.prefix, sys.base_prefix, os.path.realpath(sys.executable), REPO,
                 self.tools['ray']):
      rel = os.path.relpath(os.path.realpath(path), self.home)
      if not rel.startswith('..') and rel != '.':
        binds.add(rel.split(os.sep)[0])
    self.binds = []
    for top in sorted(binds):
      dst = os.path.join(self.home_src, top)
      os.makedirs(dst, exist_ok=True)
      self.binds.append((os.path.join(self.home, top), dst))

  def start(self):
    self._make_home()
    os.makedirs('/tmp/ray', exist_ok=True)  # Mount point only; the namespace gets its own.
    spec = dict(binds=self.binds, home_src=self.home_src, home=self.home, ray_tmp=self.ray_tmp,
                sshd=self.tools['sshd'], mount=self.tools['mount'], config=self.sshd_config)
    self._log = open(os.path.join(self.logs, 'sshd.log'), 'w')
    # unshare dies with this process, and its child, the namespace's PID 1, with unshare.
    self._proc = subprocess.Popen(
        [self.tools['setpriv'], '--pdeathsig=KILL', '--', self.tools['unshare'], '--pid',
         '--fork', '--kill-child', '--mount-proc', '--net', '--', sys.executable, '-c', _BOOT,
         json.dumps(spec)],
        stdout=self._log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while self.pid is None:
      children = psutil.Process(self._proc.pid).children()
      if children:
        self.pid = children[0].pid
      elif self._proc.poll() is not None or time.monotonic() > deadline:
        raise AssertionError('the namespace did not start:\n' + _tail(self._log.name))
      else:
        time.sleep(0.05)
    while True:  # sshd is up once a key login works.
      probe = self.run([self.tools['ssh'], '-i', self.key, '-o', 'BatchMode=yes', '-o',
                        'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o',
                        'ConnectTimeout=2', f'{self.user}@127.0.0.1', 'true'], timeout=20)
      if probe.returncode == 0:
        break
      if self._proc.poll() is not None or time.monotonic() > deadline:
        raise AssertionError(f'no SSH login on 127.0.0.1: {probe.stderr[-2000:]}\nsshd log:\n'
                             + _tail(self._log.name))
      time.sleep(0.2)

    # The host's venv: the stack these tests run with, plus the `ray` entry point that
    # installing ray into the venv would have written (the start commands run the venv's `ray`,
    # so its workers run the venv's Python, as on a real host).
    venv = os.path.join(self.home, 'rmr-venv')
    made = self.run([sys.executable, '-m', 'venv', '--system-site-packages', venv], timeout=120,
                    name='venv')
    assert made.returncode == 0, made.stdout + made.stderr
    add_test_stack(os.path.join(self.home_src, 'rmr-venv'))
    script = os.path.join(self.home_src, 'rmr-venv', 'bin', 'ray')
    with open(script, 'w') as f:
      f.write(f'#!{venv}/bin/python\nimport sys\nfrom ray.scripts.scripts import main\n'
              'sys.exit(main())\n')
    os.chmod(script, 0o755)

  def run(self, args, timeout, name=None, stdin=None):
    """Runs `args` (in REPO) inside the namespaces; with `name`, logs to logs/<name>.log too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('RAY_ADDRESS')}
    # TMPDIR: the launcher's config cache and bootstrap files stay in the test's directory.
    env.update(HOME=self.home, TMPDIR=self.cli_tmp, RAY_USAGE_STATS_ENABLED='0')
    cmd = [self.tools['nsenter'], f'--target={self.pid}', '--net', '--mount', '--pid', '--',
           'sh', '-c', 'cd "$0" && exec "$@"', REPO, *args]
    try:
      proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                            input=stdin)
    except subprocess.TimeoutExpired as e:
      out = e.stdout.decode(errors='replace') if isinstance(e.stdout, bytes) else e.stdout or ''
      err = e.stderr.decode(errors='replace') if isinstance(e.stderr, bytes) else e.stderr or ''
      proc = subprocess.CompletedProcess(cmd, 124, out, err + f'\n[timed out after {timeout} s]')
    if name:
      with open(os.path.join(self.logs, f'{name}.log'), 'w') as f:
        f.write(f'$ {" ".join(args)}\n[rc {proc.returncode}]\n{proc.stdout}\n{proc.stderr}')
    return proc

  def close(self):
    """Kills sshd, the namespace's PID 1, and with it every process left in the namespace."""
    if self._proc is None:
      return
    if self.pid is not None:
      try:
        os.kill(self.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    self._proc.kill()
    self._proc.wait(timeout=30)
    self._log.close()


@pytest.fixture
def ssh_host(tmp_path):
  tools = _prerequisites()
  host = _Host(tmp_path / 'host', tools)
  try:
    host.start()
    yield host
  finally:
    host.close()


def _cluster_config(host: _Host) -> str:
  """launch/local-cluster.yaml with the machine-specific fields of this host (see the docstring)."""
  with open(os.path.join(REPO, 'launch', 'local-cluster.yaml')) as f:
    config = yaml.safe_load(f)
  assert config['provider'] == {'type': 'local', 'head_ip': '127.0.0.1', 'worker_ips': []}
  config['auth'] = {'ssh_user': host.user, 'ssh_private_key': host.key}
  path = os.path.join(host.root, 'local-cluster.yaml')
  with open(path, 'w') as f:
    yaml.safe_dump(config, f, sort_keys=False)
  return path


def _output(proc) -> str:
  return f'[rc {proc.returncode}]\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}'


@pytest.mark.slow
def test_ray_submit_on_local_cluster_over_ssh(ssh_host, tmp_path):
  config = _cluster_config(ssh_host)
  ray = ssh_host.tools['ray']
  workdir = str(tmp_path / 'run')
  try:
    up = ssh_host.run([ray, 'up', '-y', '--no-config-cache', config], timeout=240, name='up')
    assert up.returncode == 0, 'ray up failed:\n' + _output(up)

    submit = ssh_host.run(
        [ray, 'submit', config, 'atari.py', '--config=configs/atari.py:test',
         f'--workdir={workdir}', '--config.ray.address=auto',
         # Collectors and one learner group on the cluster, with one learned abstract model
         # (the local all-stages tests cover every stage and the test config's four models).
         # (`ray submit` runs its arguments through a shell: they are quoted for it.) The
         # learners read the driver's Reverb server (the test config's read the episode store).
         '--stages=collect,abstract,report', '--config.replay.learner_source=reverb',
         shlex.quote("--config.abstract.models=('copy','mpnn')")],
        timeout=420, name='submit')
    assert submit.returncode == 0, 'ray submit failed:\n' + _output(submit)
    assert 'atari.py: done' in submit.stdout, _output(submit)
  finally:
    down = ssh_host.run([ray, 'down', '-y', config], timeout=120, name='down')
  assert down.returncode == 0, 'ray down failed:\n' + _output(down)
  left = ssh_host.run([sys.executable, '-'], timeout=60, stdin=_LEFTOVERS)
  assert left.returncode == 0, _output(left)
  assert left.stdout.strip() == '[]', f'Ray processes left after ray down: {left.stdout}'

  # The driver joined the cluster that `ray up` started (one Ray session, with a driver log)
  # rather than starting a Ray of its own.
  sessions = [d for d in os.listdir(ssh_host.ray_tmp) if d.startswith('session_2')]
  assert len(sessions) == 1, sessions
  logs = os.listdir(os.path.join(ssh_host.ray_tmp, sessions[0], 'logs'))
  assert any(f.startswith('python-core-driver-') for f in logs), logs

  # The run's outputs (the test config: Pong; here 2 abstract models, Table 2).
  assert 'abstract: learner group of 1 process(es) on 127.0.0.1' in submit.stdout
  with open(os.path.join(workdir, 'report', 'table2.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [(r['game'], r['model']) for r in rows] == [('pong', 'copy'), ('pong', 'mpnn')]
  for name in ('table2.md', 'results.json'):
    assert os.path.getsize(os.path.join(workdir, 'report', name)) > 0, name
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['ray']['address'] == 'auto'
