"""Hypothesis profiles. Choose with HYPOTHESIS_PROFILE: ``ci`` (default) keeps `make test`
within minutes on two cores; ``thorough`` runs many more examples and larger shapes."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=12, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
