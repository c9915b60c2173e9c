"""Rendering: pure functions from rows/state to Rich renderables, JSON, CSV and charts.

Nothing here touches a service, a clock or a terminal: callers pass ``now`` and a width,
and tests render with ``Console(record=True, width=...)``.
"""
