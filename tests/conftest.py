"""Shared test configuration.

Hypothesis runs derandomized under the ``ci`` profile (selected by HYPOTHESIS_PROFILE=ci,
which .ci/run sets) so a CI failure is reproducible; locally the ``dev`` profile
explores new examples on each run.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "dev", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
