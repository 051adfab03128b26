"""McNemar's paired test lives in ``lib.core.stats`` (chapters 2 and 3 both use it); re-exported here."""
from lib.core.stats import McNemarResult, format_p, mcnemar

__all__ = ["McNemarResult", "format_p", "mcnemar"]
