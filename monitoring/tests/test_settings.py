"""The operating settings: out-of-range values are reported by the system checks, like every setting."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DRIFT_PSI_THRESHOLD", 0.0),
        ("DRIFT_FEATURE_SHARE", 1.5),
        ("DRIFT_ADWIN_DELTA", 1.0),
        ("DRIFT_ERROR_RATIO", 0.5),
        ("CHALLENGER_HOURS", -1.0),
    ],
)
def test_out_of_range_values_are_reported(settings, name, value):
    assert not [e for e in run_checks() if e.id == "cryptopred.E001"]
    setattr(settings, name, value)
    errors = [e.msg for e in run_checks() if e.id == "cryptopred.E001"]
    assert len(errors) == 1 and errors[0].startswith(f"{name}: must be")
