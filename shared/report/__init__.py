"""Telling people: notifications and alerts (notify) and the history report (history)."""
