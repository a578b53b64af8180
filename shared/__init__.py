"""The driver package shared by every entry point in functions/.

Small modules with one job each: config (jobs file), db (DATABASE_URL and connections),
fetch (HTTP), storage (the scraps tables), scrape (one run of checks), events (Lambda
triggers), log (redacting logging).
"""

NAME = "scheduled-jobs"
VERSION = "0.1.0"
USER_AGENT = f"{NAME}/{VERSION} (+scheduled page checks)"
