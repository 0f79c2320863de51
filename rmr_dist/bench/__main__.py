"""Runs a benchmark: `python -m rmr_dist.bench collect [--flags]`."""

import importlib
import sys

# Command name -> module of rmr_dist.bench (the names stay short; the modules carry their domain).
BENCHMARKS = {'collect': 'atari_collect', 'abstract': 'atari_abstract', 'natural': 'atari_natural',
              'scaling': 'atari_scaling', 'balls': 'balls'}


def main(argv: list[str]) -> None:
  if len(argv) < 2 or argv[1] not in BENCHMARKS:
    got = argv[1] if len(argv) > 1 else '(none)'
    sys.exit(f'rmr_dist.bench: unknown benchmark {got}; valid: {", ".join(BENCHMARKS)}. '
             f'Usage: python -m rmr_dist.bench NAME [--help]')
  importlib.import_module(f'rmr_dist.bench.{BENCHMARKS[argv[1]]}').main(argv[2:])


if __name__ == '__main__':
  main(sys.argv)
