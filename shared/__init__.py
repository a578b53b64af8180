"""The driver package shared by every entry point in functions/, grouped by concern:

- kinds.py: the registry of job kinds, read by everything else; result.py: the one Result;
  errors.py: the one error base, with exit codes; config.py and keys.py: the jobs file.
- platform/: what every kind stands on (entry adapter, events, secrets, log, db, schedule, ...).
- scrape/, refresh/: the two kinds. report/: notifications and the history report.
"""

NAME = "scheduled-jobs"
VERSION = "0.2.0"
USER_AGENT = f"{NAME}/{VERSION} (+scheduled page checks)"
