"""Constants that the measurement, the readers of other formats and the run config share, defined once.

Plain Python (no torch, no dagster), at the bottom of the package so every layer may import it.
"""

import math

# Divergences are in nats; the Jensen-Shannon divergence of two distributions never exceeds ln 2.
LN2: float = math.log(2)

# How a pair's value averages over responses: only the two personas' own responses (the method), or
# every persona's responses (the earlier study's averaging).
PAIR_OWN = "pair_own"
ALL_RESPONSES = "all_responses"
AVERAGING_MODES = (PAIR_OWN, ALL_RESPONSES)

# Permutations per design-respecting test (Mantel, persona permutation, difference of ρ).
DEFAULT_N_PERMUTATIONS = 2000
