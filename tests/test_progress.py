"""diffnb.progress: one switch for the progress bars of long work (issue 20 item 3)."""
import pytest

from diffnb import progress


def test_bars_are_off_under_pytest_and_follow_the_switch(monkeypatch):
    monkeypatch.delenv(progress.SWITCH, raising=False)
    assert not progress.enabled()                      # pytest sets PYTEST_CURRENT_TEST
    assert progress.bar(range(3)).disable
    monkeypatch.setenv(progress.SWITCH, "1")
    assert progress.enabled() and not progress.bar(range(3)).disable
    monkeypatch.setenv(progress.SWITCH, "0")
    assert not progress.enabled()
    monkeypatch.setenv(progress.SWITCH, "yes")
    with pytest.raises(ValueError, match="DIFFNB_PROGRESS must be '0' .* or '1'"):
        progress.enabled()


def test_a_bar_counts_what_it_wraps(monkeypatch):
    monkeypatch.setenv(progress.SWITCH, "1")
    b = progress.bar(range(5), desc="work")
    assert list(b) == [0, 1, 2, 3, 4] and b.n == 5
