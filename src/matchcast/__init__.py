"""matchcast: live match updates for tournament platforms."""

__version__ = "0.1.0"
