"""The rmr_dist import graph: no import cycles, and Ray only where it belongs.

Every module of the package (`pkgutil.walk_packages`) is parsed with `ast`, not imported. Each
`import` / `from ... import` anywhere in it (module level, inside functions, under `if`) that
names an rmr_dist module is an edge: `import rmr_dist.x.y` is an edge to `rmr_dist.x.y`;
`from rmr_dist.x import y` to the module `rmr_dist.x.y` when that is a module, else to
`rmr_dist.x` (y is a name defined there). Relative imports are resolved against the importing
module's package.

Function-level imports count: a lazy import only defers the circle to the first call, and a
module graph with a cycle cannot be read, tested or moved piece by piece.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import pkgutil
from collections.abc import Mapping

import rmr_dist

# Packages whose modules may import ray: the Ray wiring, and the benchmarks that start clusters.
RAY_PACKAGES = ('rmr_dist.distributed', 'rmr_dist.bench')
# Modules outside RAY_PACKAGES that import ray today, each with the reason it is tolerated.
RAY_ALLOWED: dict[str, str] = {}

Graph = dict[str, dict[str, int]]  # {module: {imported module: line of its first import}}


def package_modules() -> dict[str, str]:
  """{module name: source path} of rmr_dist and every module and package under it."""
  modules = {'rmr_dist': rmr_dist.__file__}
  for info in pkgutil.walk_packages(rmr_dist.__path__, prefix='rmr_dist.'):
    modules[info.name] = importlib.util.find_spec(info.name).origin
  return modules


def import_nodes(path: str) -> list[ast.Import | ast.ImportFrom]:
  """Every import statement of a source file, in any scope."""
  with open(path) as f:
    tree = ast.parse(f.read(), filename=path)
  return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _absolute(node: ast.ImportFrom, name: str, path: str) -> str:
  """The absolute module a `from` import reads from (relative ones resolved)."""
  if not node.level:
    return node.module
  package = name if os.path.basename(path) == '__init__.py' else name.rpartition('.')[0]
  parts = package.split('.')
  parts = parts[:len(parts) - (node.level - 1)]
  return '.'.join(parts + ([node.module] if node.module else []))


def imported_modules(name: str, path: str, modules: Mapping[str, str]) -> dict[str, int]:
  """{module of `modules` that module `name` imports: line of its first import}."""
  edges: dict[str, int] = {}
  for node in import_nodes(path):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    else:
      source = _absolute(node, name, path)
      targets = [f'{source}.{alias.name}' if f'{source}.{alias.name}' in modules else source
                 for alias in node.names]
    for target in targets:
      if target in modules and target != name:
        edges.setdefault(target, node.lineno)
  return edges


def import_graph(modules: Mapping[str, str]) -> Graph:
  """The graph of rmr_dist-internal imports of `modules` ({name: source path})."""
  return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: Graph) -> list[str] | None:
  """One import cycle ``[a, b, ..., a]`` of the graph, or None when it is acyclic."""
  state: dict[str, str] = {}  # 'open' while on the DFS stack, 'done' once finished
  stack: list[str] = []

  def visit(node: str) -> list[str] | None:
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph.get(node, {})):
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt)
        if cycle:
          return cycle
    stack.pop()
    state[node] = 'done'
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def describe(cycle: list[str], graph: Graph, modules: Mapping[str, str]) -> str:
  """'a (a.py:12) -> b (b.py:3) -> a' with the line of each import."""
  root = os.path.dirname(os.path.dirname(rmr_dist.__file__))
  steps = [f'{a} ({os.path.relpath(modules[a], root)}:{graph[a][b]})'
           for a, b in zip(cycle, cycle[1:])]
  return ' -> '.join(steps + [cycle[-1]])


def test_find_cycle_on_small_graphs():
  assert find_cycle({'a': {'b': 1}, 'b': {'c': 1}, 'c': {}}) is None
  assert find_cycle({'a': {'b': 1, 'c': 1}, 'b': {'c': 1}, 'c': {}}) is None  # a diamond
  assert find_cycle({'a': {'b': 1}, 'b': {'c': 1}, 'c': {'a': 1}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'x': {'a': 1}, 'a': {'b': 1}, 'b': {'a': 1}}) == ['a', 'b', 'a']


def test_from_import_resolves_to_the_module_else_the_package(tmp_path):
  path = tmp_path / 'mod.py'
  path.write_text('from rmr_dist.learning import loop\n'  # a module: rmr_dist.learning.loop
                  'def f():\n'
                  '  from rmr_dist.learning.loop import replicate\n'  # a name in loop
                  '  from . import processors\n'  # relative to rmr_dist.networks
                  '  import rmr_dist.losses\n')
  modules = {'rmr_dist.learning': '', 'rmr_dist.learning.loop': '', 'rmr_dist.losses': '',
             'rmr_dist.networks.processors': '', 'rmr_dist.networks.mod': str(path)}
  assert imported_modules('rmr_dist.networks.mod', str(path), modules) == {
      'rmr_dist.learning.loop': 1, 'rmr_dist.networks.processors': 4, 'rmr_dist.losses': 5}


def test_walk_finds_the_package():
  modules = package_modules()
  assert {'rmr_dist.checkpointing', 'rmr_dist.learning.atari_abstract',
          'rmr_dist.networks.processors', 'rmr_dist.distributed.atari_program'} <= set(modules)


def test_no_import_cycles():
  modules = package_modules()
  graph = import_graph(modules)
  assert graph['rmr_dist.learning.atari_abstract']  # the graph is not trivially empty
  cycle = find_cycle(graph)
  assert cycle is None, 'import cycle: ' + describe(cycle, graph, modules)


def test_only_the_ray_packages_import_ray():
  offenders = {}
  for name, path in package_modules().items():
    if any(name == p or name.startswith(p + '.') for p in RAY_PACKAGES) or name in RAY_ALLOWED:
      continue
    for node in import_nodes(path):
      sources = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ''] if not node.level else [])
      if any(s == 'ray' or s.startswith('ray.') for s in sources):
        offenders.setdefault(name, node.lineno)
  assert not offenders, (f'ray imported outside {RAY_PACKAGES} (module: line): {offenders}')
