"""A family of N behaviour-policy heads of varying exploration, persistence and taste.

The paper collects with the 32 policy heads of a trained Agent57, which range from near-greedy to
very exploratory. We have no Agent57, so each head i of N wraps a pluggable *base* policy
(`rmr_dist.acting.atari_policies`: uniform random, or a greedy policy network from a checkpoint) and
differs from the others in three documented ways:

1. Exploration rate, the Ape-X schedule `eps_i = eps ** (1 + alpha * i / (N - 1))`: head 0 explores
   with probability `eps` (0.4 by default), head N-1 with `eps ** (1 + alpha)` (~0.0006).
2. Exploration *taste*: when a head explores it samples from its own action preferences, a
   distribution over the 18 actions drawn from Dirichlet(`concentration`). Small concentrations
   give peaky, distinct preferences (one head mostly fires, another mostly goes left), so heads
   visit different parts of a game even when the base policy is random.
3. Action persistence: with probability `persistence_i`, drawn uniformly in [min_persistence,
   max_persistence], a head repeats its previous action (temporally extended behaviour, like human
   players who hold a direction).

Per step: repeat the previous action w.p. persistence_i; else explore (preferences) w.p. eps_i;
else act with the base policy. All randomness comes from a per-episode numpy Generator, so an
episode is reproducible from (seed, game, head, episode).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rmr_dist.acting import atari_policies
from rmr_dist.envs import atari


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """The behaviour parameters of one head.

  Attributes:
    index: head index i in [0, N).
    epsilon: exploration probability eps_i (Ape-X schedule).
    persistence: probability of repeating the previous action.
    preferences: [18] float64 exploration distribution over actions (sums to 1).
  """
  index: int
  epsilon: float
  persistence: float
  preferences: np.ndarray


def apex_epsilons(num_heads: int, epsilon: float, alpha: float) -> np.ndarray:
  """Ape-X exploration rates `eps ** (1 + alpha * i / (N - 1))` for i in [0, N): [N] float64."""
  if num_heads == 1:
    return np.array([epsilon])
  i = np.arange(num_heads)
  return epsilon ** (1.0 + alpha * i / (num_heads - 1))


def make_head_specs(num_heads: int, *, epsilon: float, alpha: float, max_persistence: float,
                    preference_concentration: float, seed: int,
                    min_persistence: float = 0.0) -> list[HeadSpec]:
  """Builds the N head specs; deterministic in `seed` (the same for every game and collector).

  Args:
    num_heads: N.
    epsilon: Ape-X base epsilon.
    alpha: Ape-X exponent.
    max_persistence: upper end of the uniform draw of each head's persistence.
    preference_concentration: Dirichlet concentration of the action preferences.
    seed: seed of the head family.
    min_persistence: lower end of the uniform draw of each head's persistence.

  Returns:
    N HeadSpecs, index i at position i.
  """
  rng = np.random.default_rng([seed, 0x4EAD])
  eps = apex_epsilons(num_heads, epsilon, alpha)
  persistence = rng.uniform(min_persistence, max_persistence, size=num_heads)
  prefs = rng.dirichlet(np.full(atari.NUM_ACTIONS, preference_concentration), size=num_heads)
  return [HeadSpec(index=i, epsilon=float(eps[i]), persistence=float(persistence[i]),
                   preferences=prefs[i]) for i in range(num_heads)]


def specs_for(heads_config, seed: int) -> list[HeadSpec]:
  """The head specs of a `config.HeadsConfig` (`make_head_specs` with its fields)."""
  h = heads_config
  return make_head_specs(h.num_heads, epsilon=h.epsilon, alpha=h.alpha,
                         min_persistence=h.min_persistence, max_persistence=h.max_persistence,
                         preference_concentration=h.preference_concentration, seed=seed)


class Head:
  """One behaviour policy: a base policy modulated by a HeadSpec.

  Args:
    spec: the head's parameters.
    base_policy: the policy acted on when the head neither repeats nor explores.
  """

  def __init__(self, spec: HeadSpec, base_policy: atari_policies.Policy):
    self.spec = spec
    self._base = base_policy
    self._cdf = np.cumsum(spec.preferences)
    self._cdf[-1] = 1.0
    self._rng = np.random.default_rng(0)
    self._previous: int | None = None

  def begin_episode(self, rng: np.random.Generator) -> None:
    """Resets the head for an episode whose randomness is `rng`."""
    self._rng = rng
    self._previous = None

  def act(self, observation: atari.Observation) -> int:
    """Returns an action index in [0, 18) for `observation`."""
    u_repeat, u_explore, u_pick = self._rng.random(3)
    if self._previous is not None and u_repeat < self.spec.persistence:
      action = self._previous
    elif u_explore < self.spec.epsilon:
      action = int(np.searchsorted(self._cdf, u_pick, side='right'))
    else:
      action = self._base.act(observation, self._rng)
    self._previous = action
    return action
