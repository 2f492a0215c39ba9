"""Reusable widgets: frame view with overlay, verdict banner, counters, status lights, NG strip, PIN dialog."""
