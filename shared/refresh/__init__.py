"""The refresh kind: the job (job), CARTO's SQL API (carto; its answers read as they arrive in
answer, its deadline down to the sockets in deadline), direct PostgreSQL (postgres), what a
success reports (outcome), the run history tables (history) and one run (run)."""
