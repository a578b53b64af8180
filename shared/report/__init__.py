"""Telling people: notifications and alerts (notify) sent beside the run (outbox), the one
bounded diff (diff), the history report read from the database (history) and rendered as text or
one HTML page (render)."""
