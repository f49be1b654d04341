"""toy-t2i's eta 0 bar (issue 14): one of the quality bars of tests/test_quality.py, in a file of its own so that
pytest-xdist (`--dist loadfile`, one file per worker) samples eta 0 beside test_quality.py's eta 1 samples rather
than after them. Both read the session fixture `t2i_quality_at` (tests/conftest.py), 256 partial captions each."""
import pytest
from test_quality import _t2i_bar

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", [pytest.param("stated-eta0", marks=_t2i_bar("stated-eta0"))])
def test_toy_t2i_deterministic_sampler_draws_the_stated_attributes(t2i_quality_at, name):
    q = t2i_quality_at(0.0)
    assert q.stated_agree >= 0.75, f"eta 0: every stated attribute agrees on {q.stated_agree:.3f} < 0.75 ({q})"
