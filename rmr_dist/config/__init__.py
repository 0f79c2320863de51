"""Typed, validated configuration for the Atari and bouncing-balls programs.

Users write `ml_collections.ConfigDict` files under `configs/` (readable, overridable from the
command line with `--config.heads.num_heads=8`). The program never reads those dicts directly:
`load_atari_config` / `load_balls_config` turn one into frozen dataclasses, and on the way fail
at once on an unknown key, a missing key, a wrong type or an invalid value, naming the bad value
and what would be valid. Everything downstream receives these dataclasses.

The schema is split by domain: `schema` (the error type, validators, the Ray section, the
builder), `atari` and `balls` (each program's sections and loader). This package re-exports
their public names, so code imports `rmr_dist.config` alone.
"""

from rmr_dist.config.atari import (
    valid_games,
    check_game,
    EnvConfig,
    BASE_POLICIES,
    RAM_ENCODINGS,
    AGENT_ACTION_SETS,
    AGENT_CHECKPOINTS,
    HeadsConfig,
    CollectConfig,
    REPLAY_SERVERS,
    LEARNER_SOURCES,
    ReplayConfig,
    ABSTRACT_MODELS,
    AbstractConfig,
    NATURAL_VARIANTS,
    TRUNKS,
    READOUTS,
    NEGATIVES,
    NATURAL_LOSSES,
    OVER_MODELS,
    NaturalConfig,
    ProbeConfig,
    AgentConfig,
    AtariConfig,
    load_atari_config,
)
from rmr_dist.config.balls import (
    BALLS_VARIANTS,
    SLOT_INITS,
    PROCESSOR_GRAPHS,
    SLOT_LATENTS,
    SimConfig,
    BallsDataConfig,
    ScheduleConfig,
    BallsAbstractConfig,
    BallsNaturalConfig,
    BallsConfig,
    load_balls_config,
)
from rmr_dist.config.schema import (
    ConfigError,
    AGGREGATIONS,
    NO_RAY,
    RayConfig,
    to_dict,
)

__all__ = [
    'valid_games',
    'check_game',
    'EnvConfig',
    'BASE_POLICIES',
    'RAM_ENCODINGS',
    'AGENT_ACTION_SETS',
    'AGENT_CHECKPOINTS',
    'HeadsConfig',
    'CollectConfig',
    'REPLAY_SERVERS',
    'LEARNER_SOURCES',
    'ReplayConfig',
    'ABSTRACT_MODELS',
    'AbstractConfig',
    'NATURAL_VARIANTS',
    'TRUNKS',
    'READOUTS',
    'NEGATIVES',
    'NATURAL_LOSSES',
    'OVER_MODELS',
    'NaturalConfig',
    'ProbeConfig',
    'AgentConfig',
    'AtariConfig',
    'load_atari_config',
    'BALLS_VARIANTS',
    'SLOT_INITS',
    'PROCESSOR_GRAPHS',
    'SLOT_LATENTS',
    'SimConfig',
    'BallsDataConfig',
    'ScheduleConfig',
    'BallsAbstractConfig',
    'BallsNaturalConfig',
    'BallsConfig',
    'load_balls_config',
    'ConfigError',
    'AGGREGATIONS',
    'NO_RAY',
    'RayConfig',
    'to_dict',
]
