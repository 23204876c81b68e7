"""The models page says "not checked yet" once for the horizons whose drift was never checked."""

from __future__ import annotations

import pytest

from monitoring.models import DriftReport
from web.tests.test_pages import artifact

pytestmark = pytest.mark.django_db


def test_unchecked_horizons_are_said_once(client, market):
    artifact(market, 1, "active", 1.0)
    page = client.get("/models/").content.decode()
    assert page.count("not checked yet") == 1 and "Drift +1, +3, +6</span> not checked yet" in page

    DriftReport.objects.create(market=market, horizon=1, max_psi=0.05, max_psi_feature="ret_1")
    page = client.get("/models/").content.decode()
    assert page.count("not checked yet") == 1 and "Drift +3, +6</span> not checked yet" in page
    assert "largest PSI 0.05 (ret_1)" in page  # the +1 check has its own line
