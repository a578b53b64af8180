"""The refresh kind: the job (job), CARTO's SQL API (carto), direct PostgreSQL (postgres), what a
success reports (outcome), the run history tables (history) and one run (run)."""
