"""Constants of the measurement that several layers need, defined once (no torch, no dagster)."""

import math

# Divergences are in nats; the Jensen-Shannon divergence of two distributions never exceeds ln 2.
LN2: float = math.log(2)
