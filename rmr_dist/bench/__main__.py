"""Runs a benchmark: `python -m rmr_dist.bench collect [--flags]`."""

import sys

BENCHMARKS = ('collect', 'abstract', 'natural', 'scaling', 'balls')


def main(argv: list[str]) -> None:
  if len(argv) < 2 or argv[1] not in BENCHMARKS:
    got = argv[1] if len(argv) > 1 else '(none)'
    sys.exit(f'rmr_dist.bench: unknown benchmark {got}; valid: {", ".join(BENCHMARKS)}. '
             f'Usage: python -m rmr_dist.bench NAME [--help]')
  name = argv[1]
  if name == 'collect':
    from rmr_dist.bench import collect  # pylint: disable=g-import-not-at-top
    collect.main(argv[2:])
  elif name == 'abstract':
    from rmr_dist.bench import abstract  # pylint: disable=g-import-not-at-top
    abstract.main(argv[2:])
  elif name == 'natural':
    from rmr_dist.bench import natural  # pylint: disable=g-import-not-at-top
    natural.main(argv[2:])
  elif name == 'scaling':
    from rmr_dist.bench import scaling  # pylint: disable=g-import-not-at-top
    scaling.main(argv[2:])
  elif name == 'balls':
    from rmr_dist.bench import balls  # pylint: disable=g-import-not-at-top
    balls.main(argv[2:])


if __name__ == '__main__':
  main(sys.argv)
