"""The path layer: every file a program writes or reads, on local disk or in an object store.

A path is a local path (`/shared/run`, `runs/x`) or an object-store URI (`s3://bucket/run`,
`gs://bucket/run`). The functions here take either and do the same thing:

  join(root, *parts)           a child path (posix joins for URIs)
  exists / isdir / listdir     an object store has no directories: a "directory" is a key prefix
  read_bytes / read_text       FileNotFoundError naming the path when it is not there
  write_bytes / write_text     atomic: local files are written beside the target, fsynced and
                               renamed; an object is put whole (S3 and GCS never show a partial
                               object), so callers that write an index entry last keep their
                               "complete when the entry exists" rule on both
  remove_tree                  a directory or every object under a prefix
  upload_tree / Mirror         for components that can only write local files (Orbax,
                               Reverb's checkpointer, TensorBoard): they write on their node and
                               the result is copied to / from the work directory. A Mirror
                               uploads changed files, then its index (`.mirror-index.json`)
                               last, and reads back only what an index lists, so an interrupted
                               upload is never taken for a complete one

Backends: local paths use `os`; `s3://` uses boto3 (the `s3` extra; endpoint and credentials come
from boto3's usual sources: `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, the environment, or a
node's instance role); other schemes that fsspec knows (`gs://` with gcsfs, ...) go through
fsspec. `check_path` refuses, before anything starts, a scheme no backend handles or one whose
backend is not installed, naming the scheme and what to install, and a bucket that does not
exist.
"""

from __future__ import annotations

import importlib.util
import io
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from rmr_dist import config as config_lib

_INSTALL = {'s3': 'boto3 (pip install -c constraints.txt -e ".[s3]")'}


def scheme(path: str) -> str:
  """'' for a local path (also `file://...`), else the URI scheme ('s3', 'gs', ...)."""
  head, sep, _ = path.partition('://')
  if not sep or '/' in head or not head:
    return ''
  return '' if head == 'file' else head.lower()


def is_remote(path: str) -> bool:
  """True for an object-store URI."""
  return bool(scheme(path))


def normalize(path: str) -> str:
  """An absolute local path, or the URI without a trailing '/' (and `file://` stripped)."""
  if path.startswith('file://'):
    path = path[len('file://'):]
  if not is_remote(path):
    return os.path.abspath(path)
  return path.rstrip('/')


def join(root: str, *parts: str) -> str:
  """`root`/`parts`: os.path.join locally, '/'-joined for URIs."""
  if is_remote(root):
    return posixpath.join(root, *parts)
  return os.path.join(root, *parts)


def dirname(path: str) -> str:
  return posixpath.dirname(path) if is_remote(path) else os.path.dirname(path)


def _split(uri: str) -> tuple[str, str]:
  """(bucket, key) of 's3://bucket/key'."""
  rest = uri.split('://', 1)[1]
  bucket, _, key = rest.partition('/')
  return bucket, key


# ------------------------------------------------------------------------------------------
# Object-store backends: write / read whole objects, list by prefix.
# ------------------------------------------------------------------------------------------


class _S3:
  """s3:// through boto3."""

  def __init__(self):
    import boto3  # pylint: disable=g-import-not-at-top
    self.client = boto3.client('s3')

  def check_bucket(self, uri: str) -> None:
    import botocore.exceptions  # pylint: disable=g-import-not-at-top
    bucket, _ = _split(uri)
    try:
      self.client.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as e:
      code = e.response.get('Error', {}).get('Code', '')
      what = 'does not exist' if code in ('404', 'NoSuchBucket') else f'cannot be used ({e})'
      raise config_lib.ConfigError(
          f'--workdir={uri}: bucket {bucket!r} {what} at {self.client.meta.endpoint_url}; '
          'create it first or give another bucket.') from e
    except botocore.exceptions.BotoCoreError as e:
      raise config_lib.ConfigError(f'--workdir={uri}: bucket {bucket!r} cannot be reached: '
                                   f'{e}') from e

  def read(self, uri: str) -> bytes:
    bucket, key = _split(uri)
    try:
      return self.client.get_object(Bucket=bucket, Key=key)['Body'].read()
    except self.client.exceptions.NoSuchKey as e:
      raise FileNotFoundError(f'No object {uri}') from e

  def write(self, uri: str, data: bytes) -> None:
    bucket, key = _split(uri)
    self.client.put_object(Bucket=bucket, Key=key, Body=data)

  def keys(self, uri: str) -> Iterator[str]:
    """Every key under the prefix `uri` (recursive), as full URIs."""
    bucket, key = _split(uri)
    prefix = key.rstrip('/') + '/' if key else ''
    paginator = self.client.get_paginator('list_objects_v2')
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
      for obj in page.get('Contents', []):
        yield f's3://{bucket}/{obj["Key"]}'

  def exists(self, uri: str) -> bool:
    bucket, key = _split(uri)
    try:
      self.client.head_object(Bucket=bucket, Key=key)
      return True
    except self.client.exceptions.ClientError:
      return False

  def delete(self, uris: list[str]) -> None:
    for i in range(0, len(uris), 1000):
      batch = uris[i:i + 1000]
      bucket = _split(batch[0])[0]
      self.client.delete_objects(Bucket=bucket, Delete={
          'Objects': [{'Key': _split(u)[1]} for u in batch]})


class _Fsspec:
  """Any other scheme fsspec has an implementation for (gs:// with gcsfs, ...)."""

  def __init__(self, name: str):
    import fsspec  # pylint: disable=g-import-not-at-top
    self.fs = fsspec.filesystem(name)

  def check_bucket(self, uri: str) -> None:
    bucket, _ = _split(uri)
    if not self.fs.exists(uri.split('://', 1)[0] + '://' + bucket):
      raise config_lib.ConfigError(f'--workdir={uri}: bucket {bucket!r} does not exist; create '
                                   'it first or give another bucket.')

  def read(self, uri: str) -> bytes:
    try:
      return self.fs.cat_file(uri)
    except FileNotFoundError as e:
      raise FileNotFoundError(f'No object {uri}') from e

  def write(self, uri: str, data: bytes) -> None:
    self.fs.pipe_file(uri, data)

  def keys(self, uri: str) -> Iterator[str]:
    if not self.fs.isdir(uri):
      return
    proto = uri.split('://', 1)[0]
    for key in self.fs.find(uri):
      yield key if '://' in key else f'{proto}://{key}'

  def exists(self, uri: str) -> bool:
    return self.fs.isfile(uri)

  def delete(self, uris: list[str]) -> None:
    self.fs.rm(uris)


_BACKENDS: dict[str, Any] = {}


def _backend(path: str) -> Any:
  """The backend of `path`'s scheme (one per scheme and endpoint setting, made on first use)."""
  name = scheme(path)
  key = (name, os.environ.get('AWS_ENDPOINT_URL_S3'), os.environ.get('AWS_ENDPOINT_URL'))
  if key not in _BACKENDS:
    _BACKENDS[key] = _S3() if name == 's3' else _Fsspec(name)
  return _BACKENDS[key]


def check_path(path: str, *, flag: str = '--workdir') -> str:
  """Validates a work-directory path before anything starts; returns it normalised.

  Raises:
    ConfigError: a scheme no backend handles, a backend that is not installed (naming what to
      install), a URI without a bucket, or a bucket that does not exist.
  """
  name = scheme(path)
  if not name:
    return normalize(path)
  if name == 's3':
    if importlib.util.find_spec('boto3') is None:
      raise config_lib.ConfigError(f'{flag}={path}: scheme s3:// needs {_INSTALL["s3"]}, which '
                                   'is not installed.')
  else:
    import fsspec  # pylint: disable=g-import-not-at-top
    from fsspec.registry import known_implementations as known  # pylint: disable=g-import-not-at-top
    if name not in known:
      raise config_lib.ConfigError(
          f'{flag}={path}: unknown scheme {name}://; a work directory is a local path, s3://'
          'bucket/path or another object store fsspec knows (gs:// with gcsfs, ...).')
    try:
      fsspec.get_filesystem_class(name)
    except ImportError as e:
      hint = known[name].get('err') or f'install the fsspec backend for {name}://'
      raise config_lib.ConfigError(f'{flag}={path}: scheme {name}:// has no backend installed: '
                                   f'{hint}') from e
  if not _split(path)[0]:
    raise config_lib.ConfigError(f'{flag}={path}: no bucket in the URI; give '
                                 f'{name}://<bucket>/<path>.')
  path = normalize(path)
  _backend(path).check_bucket(path)
  return path


# ------------------------------------------------------------------------------------------
# Files.
# ------------------------------------------------------------------------------------------


def exists(path: str) -> bool:
  """Whether a file (or, locally, a directory) is at `path`."""
  if is_remote(path):
    return _backend(path).exists(path) or isdir(path)
  return os.path.exists(path)


def isfile(path: str) -> bool:
  return _backend(path).exists(path) if is_remote(path) else os.path.isfile(path)


def isdir(path: str) -> bool:
  """Locally a directory; in an object store, a prefix with at least one object under it."""
  if is_remote(path):
    return next(_backend(path).keys(path), None) is not None
  return os.path.isdir(path)


def makedirs(path: str) -> None:
  """Creates a local directory (and parents); nothing for a URI (prefixes need no creating)."""
  if not is_remote(path):
    os.makedirs(path, exist_ok=True)


def walk_files(path: str) -> list[str]:
  """Every file under the directory `path` (recursive), sorted; [] when there is none."""
  if is_remote(path):
    return sorted(_backend(path).keys(path))
  return sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)


def listdir(path: str) -> list[str]:
  """The names directly under `path`, sorted ([] when it does not exist)."""
  if not is_remote(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []
  prefix = path.rstrip('/') + '/'
  return sorted({k[len(prefix):].split('/', 1)[0] for k in walk_files(path)})


def glob(pattern: str) -> list[str]:
  """The files matching `pattern` (`*`, `?`, `[...]` within a path part), sorted."""
  if not is_remote(pattern):
    import glob as glob_lib  # pylint: disable=g-import-not-at-top
    return sorted(glob_lib.glob(pattern))
  import fnmatch  # pylint: disable=g-import-not-at-top
  parts = pattern.split('/')
  fixed = next(i for i, part in enumerate(parts) if any(c in part for c in '*?['))
  depth = len(parts)
  return sorted(k for k in walk_files('/'.join(parts[:fixed]))
                if len(k.split('/')) == depth and fnmatch.fnmatchcase(k, pattern))


def open_binary(path: str) -> Any:
  """A binary file object to read `path` from (an object is read whole into memory)."""
  if is_remote(path):
    return io.BytesIO(read_bytes(path))
  return open(path, 'rb')


def size(path: str) -> int:
  """Bytes of the file at `path`."""
  if is_remote(path):
    return len(read_bytes(path))
  return os.path.getsize(path)


def read_bytes(path: str) -> bytes:
  if is_remote(path):
    return _backend(path).read(path)
  with open(path, 'rb') as f:
    return f.read()


def read_text(path: str) -> str:
  return read_bytes(path).decode()


def _atomic_local(path: str, write_fn: Callable[[Any], None]) -> None:
  """Calls write_fn(file) on a temp file beside `path`, fsyncs, then renames it to `path`."""
  path = os.path.abspath(path)
  directory = os.path.dirname(path)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, 'wb') as f:
      write_fn(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_with(path: str, write_fn: Callable[[Any], None]) -> None:
  """Atomically writes what `write_fn(binary file)` writes to `path` (see the module doc)."""
  if is_remote(path):
    buffer = io.BytesIO()
    write_fn(buffer)
    _backend(path).write(path, buffer.getvalue())
  else:
    _atomic_local(path, write_fn)


def write_bytes(path: str, data: bytes) -> None:
  write_with(path, lambda f: f.write(data))


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode())


def remove_tree(path: str) -> None:
  """Removes the directory (or every object under the prefix) `path`, if there is one."""
  if is_remote(path):
    keys = walk_files(path)
    if keys:
      _backend(path).delete(keys)
  elif os.path.isdir(path):
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(path)


def upload_tree(local_dir: str, dest: str) -> None:
  """Copies every file under `local_dir` to the same relative paths under `dest` (any scheme).

  Files are copied in sorted order, each whole (atomically); a copy that stops half way leaves
  some files missing, never a partial file.
  """
  for path in walk_files(local_dir):
    with open(path, 'rb') as f:
      write_bytes(join(dest, *os.path.relpath(path, local_dir).split(os.sep)), f.read())


def tree_bytes(path: str) -> int:
  """Total bytes of the files under the directory `path`."""
  if is_remote(path):
    return sum(len(read_bytes(p)) for p in walk_files(path))
  return sum(os.path.getsize(p) for p in walk_files(path))


MIRROR_INDEX = '.mirror-index.json'


def _mirror_root() -> str:
  """This process's directory of Mirror copies, removed when the process exits normally (a
  killed process leaves it in the temp directory)."""
  root = os.path.join(tempfile.gettempdir(), f'rmr-mirror-{os.getpid()}')
  if not os.path.isdir(root):
    import atexit  # pylint: disable=g-import-not-at-top
    import shutil  # pylint: disable=g-import-not-at-top
    os.makedirs(root)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
  return root


class Mirror:
  """A node-local working copy of a work-directory subtree (identity for a local work dir).

  For a component that writes only local files: it works in `local`; `pull()` fills `local`
  with what the last complete `push()` left at `remote`; `push()` uploads the files that
  changed, then the index of all files (the commit point), then deletes objects the index no
  longer lists. With a local `remote`, `local` is `remote` and both do nothing.

  Args:
    remote: the subtree's path in the work directory.
  """

  def __init__(self, remote: str):
    self.remote = remote
    self.local = remote
    self._pushed: dict[str, tuple[int, int]] = {}  # relpath -> (size, mtime_ns) uploaded
    if is_remote(remote):
      import hashlib  # pylint: disable=g-import-not-at-top
      digest = hashlib.sha256(remote.encode()).hexdigest()[:16]
      self.local = os.path.join(_mirror_root(), digest)

  def index(self) -> list[str] | None:
    """The files of the last complete push (relative paths), or None when there was none."""
    if not is_remote(self.remote):
      return None
    import json  # pylint: disable=g-import-not-at-top
    try:
      return json.loads(read_text(join(self.remote, MIRROR_INDEX)))
    except FileNotFoundError:
      return None

  def complete(self) -> bool:
    """Whether a push completed (for a local path: whether it exists)."""
    return self.index() is not None if is_remote(self.remote) else os.path.exists(self.remote)

  def pull(self) -> str:
    """Replaces `local` with the last complete push; returns `local`."""
    if not is_remote(self.remote):
      return self.local
    remove_tree(self.local)
    os.makedirs(self.local)
    for rel in self.index() or []:
      _atomic_local(os.path.join(self.local, *rel.split('/')),
                    lambda f, r=rel: f.write(read_bytes(join(self.remote, r))))
    self._pushed = self._stat()
    return self.local

  def _stat(self) -> dict[str, tuple[int, int]]:
    out = {}
    for path in walk_files(self.local):
      st = os.stat(path)
      out['/'.join(os.path.relpath(path, self.local).split(os.sep))] = (st.st_size,
                                                                       st.st_mtime_ns)
    return out

  def push(self) -> None:
    """Uploads what changed in `local`, then the index, then drops what is no longer there."""
    if not is_remote(self.remote):
      return
    import json  # pylint: disable=g-import-not-at-top
    now = self._stat()
    for rel, stat in sorted(now.items()):
      if self._pushed.get(rel) != stat:
        with open(os.path.join(self.local, *rel.split('/')), 'rb') as f:
          write_bytes(join(self.remote, rel), f.read())
    old = set(self.index() or [])
    write_text(join(self.remote, MIRROR_INDEX), json.dumps(sorted(now)))
    stale = [join(self.remote, rel) for rel in sorted(old - set(now))]
    if stale:
      _backend(self.remote).delete(stale)
    self._pushed = now

  def to_remote(self, local_path: str) -> str:
    """The work-directory path of a file or directory under `local`."""
    rel = os.path.relpath(local_path, self.local)
    return self.remote if rel == '.' else join(self.remote, *rel.split(os.sep))


def remove(path: str) -> None:
  """Removes the file (object) at `path` if there is one."""
  if is_remote(path):
    if _backend(path).exists(path):
      _backend(path).delete([path])
  elif os.path.exists(path):
    os.unlink(path)
