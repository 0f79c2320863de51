"""The documentation holds together: README.md stays short, keeps the two commands `.ci/run`
reads, and every relative link in it and in docs/**/*.md points at a file that exists (and, for
a `#anchor` into a Markdown file, at a heading that exists)."""

import os
import re
import unicodedata

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, 'README.md')
README_MAX_LINES = 300

_FENCE = re.compile(r'^(```|~~~).*?^\1[^\n]*$', re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r'`+[^`\n]*`+')
# [text](target) and ![alt](target); the target up to the first space or ')'.
_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
_HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*#*\s*$', re.MULTILINE)
_EXTERNAL = ('http://', 'https://', 'mailto:')


def _markdown_files() -> list[str]:
  files = [README]
  for root, _, names in os.walk(os.path.join(REPO, 'docs')):
    files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith('.md'))
  return files


def _read(path: str) -> str:
  with open(path, encoding='utf-8') as f:
    return f.read()


def _prose(text: str) -> str:
  """The text without fenced code blocks and inline code spans (links there are not links)."""
  return _INLINE_CODE.sub('', _FENCE.sub('', text))


def links(text: str) -> list[str]:
  """Every link target of Markdown `text`, outside code."""
  return _LINK.findall(_prose(text))


def _slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
  heading = _INLINE_CODE.sub(lambda m: m.group(0).strip('`'), heading)
  heading = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # A link keeps its text.
  out = []
  for ch in heading.strip().lower():
    if ch in ' -_' or unicodedata.category(ch)[0] in 'LN':
      out.append('-' if ch == ' ' else ch)
  return ''.join(out)


def anchors(text: str) -> set[str]:
  """The anchors GitHub gives the headings of Markdown `text` (repeats get -1, -2, ...)."""
  seen: dict[str, int] = {}
  result = set()
  for heading in _HEADING.findall(_FENCE.sub('', text)):
    slug = _slug(heading)
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    result.add(slug if n == 0 else f'{slug}-{n}')
  return result


def test_slug_and_link_parsing_on_hand_made_examples():
  assert _slug('Probe capacity: what made the encoders look trained') == (
      'probe-capacity-what-made-the-encoders-look-trained')
  assert _slug('Table 2, study config, trained heads') == 'table-2-study-config-trained-heads'
  assert _slug('Python 3.11 only') == 'python-311-only'
  assert anchors('# A\n## A\n```\n# not a heading\n```\n') == {'a', 'a-1'}
  text = ('See [x](a.md), ![img](b.png), [y](c.md#part) and [web](https://e.org).\n'
          '`[not](inline.md)`\n```\n[not](fenced.md)\n```\n')
  assert links(text) == ['a.md', 'b.png', 'c.md#part', 'https://e.org']


@pytest.mark.parametrize('path', _markdown_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_relative_links_resolve(path):
  text = _read(path)
  broken = []
  for target in links(text):
    if target.startswith(_EXTERNAL):
      continue
    file_part, _, anchor = target.partition('#')
    resolved = (os.path.normpath(os.path.join(os.path.dirname(path), file_part))
                if file_part else path)
    if not os.path.exists(resolved):
      broken.append(f'{target} (no file {os.path.relpath(resolved, REPO)})')
    elif anchor and resolved.endswith('.md') and anchor not in anchors(_read(resolved)):
      broken.append(f'{target} (no heading #{anchor} in {os.path.relpath(resolved, REPO)})')
  assert not broken, f'{os.path.relpath(path, REPO)}: broken links: {broken}'


def test_readme_is_short():
  with open(README, encoding='utf-8') as f:
    n = len(f.read().splitlines())
  assert n <= README_MAX_LINES, (
      f'README.md has {n} lines (at most {README_MAX_LINES}): move detail to docs/.')


def test_readme_first_code_block_is_the_two_commands():
  """`.ci/run` runs the second line of README's first code block: install + tests."""
  block = re.search(r'^```[^\n]*\n(.*?)^```', _read(README), re.MULTILINE | re.DOTALL)
  assert block, 'README.md has no fenced code block'
  lines = block.group(1).splitlines()
  assert len(lines) == 2, f'the first code block has {len(lines)} lines, not 2: {lines}'
  assert 'atari.py' in lines[0], lines[0]
  assert 'pytest' in lines[1], lines[1]
