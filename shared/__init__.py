"""The driver package shared by every entry point in functions/, in layers that import only
downward:

- core/: what everything stands on (errors, result, log and redaction, db, schedule, deadline...);
  imports nothing else of shared/.
- notify/: messages, the outbox that sends them, the one bounded diff.
- scrape/, refresh/: one package per job kind; each exports its `Kind` from kind.py and keeps all
  the SQL of its tables in store.py. A kind imports only core and notify.
- app/: on top: the list of kinds, the jobs file, the entry adapter, events, dispatch, schema,
  the report and the history tools.
"""
