"""Rate-limited logging lives in state/ratelimit.py (the lease book, in state/, logs through it too);
the services keep importing it from here."""

from state.ratelimit import LimitedLog, RateLimiter

__all__ = ["LimitedLog", "RateLimiter"]
