"""Reports from records: the DataFrame, formatting and statistics (:mod:`bench.report.core`) that the leaderboard
(:mod:`bench.leaderboard`) and the suite sections (:mod:`bench.sections`) share."""

from .core import ARROW, LEVEL, CellStats, cell_stats, fmt_num, records_frame, tied_with_best, welch_halfwidth

__all__ = ["ARROW", "LEVEL", "CellStats", "cell_stats", "fmt_num", "records_frame", "tied_with_best", "welch_halfwidth"]
