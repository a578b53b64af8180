"""The scrape kind: the job (job), HTTP fetching (fetch), noise filters (filters), the history
tables (storage) and one run of checks (run)."""
