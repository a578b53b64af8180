"""The seed article's queries, verbatim, for the tests that check our storage keeps them true."""

# Its appendix, "Breakdown query": checks and changes per day, and their totals.
BREAKDOWN = """
WITH base AS (SELECT
  date_trunc('day', seen_at)::date::text AS day,
  count(*) checks,
  count(DISTINCT body) - 1 changes
FROM (SELECT unnest(seen_at) seen_at, body FROM scraps) un
GROUP BY day)

SELECT * FROM base

UNION

SELECT 'Total:', sum(checks), sum(changes) FROM base

ORDER BY day
"""
