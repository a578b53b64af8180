"""Telling people: notifications and alerts (notify), the history report read from the database
(history) and rendered as text or one HTML page (render)."""
