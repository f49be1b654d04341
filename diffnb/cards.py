"""Moved to diffnb.maint.cards (issue 16: the maintainers' corner). Register trainers and card sections there;
this name stays importable for old scripts."""
from .maint.cards import TRAINERS, train, write_card  # noqa: F401
