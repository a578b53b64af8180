-- The bikeways example: the job of the original article, runnable anywhere PostgreSQL runs.
--
-- People suggest street segments they want safe bike lanes on (a web form appends one row per
-- suggestion to bikeways_input); the map shows bikeways_demand, one row per segment. Rather than
-- keeping the aggregate current with triggers, process_data() rebuilds it in bulk, and the
-- carto_refresh job calls `SELECT process_data()` on a schedule.
--
-- Idempotent: safe to run again (make invoke-local loads it on every run). On CARTO, paste it
-- into the SQL console (CARTO adds its own cartodb_id and the_geom columns to imported tables).

CREATE TABLE IF NOT EXISTS bikeways_input (
    cartodb_id serial PRIMARY KEY,
    segment text NOT NULL,                   -- e.g. 'Massachusetts Ave: Harvard Sq to Central Sq'
    comfort smallint CHECK (comfort BETWEEN 1 AND 5),   -- how safe it feels today, 1 = not at all
    submitted_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS bikeways_demand (
    segment text PRIMARY KEY,
    suggestions integer NOT NULL,
    mean_comfort numeric(3, 2),
    last_suggested_at timestamptz NOT NULL,
    refreshed_at timestamptz NOT NULL
);

-- Rebuild the aggregate from scratch. A function body runs in one transaction, so map readers
-- see the old rows or the new ones, never half; running it twice gives the same table.
-- Returns the number of segments, which the SQL API answer then shows.
CREATE OR REPLACE FUNCTION process_data() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    segments integer;
BEGIN
    -- Two refreshes at once (a retry overlapping a slow run) take turns: otherwise both delete,
    -- then both insert the same segments, and the second fails on the primary key.
    LOCK TABLE bikeways_demand IN EXCLUSIVE MODE;
    DELETE FROM bikeways_demand;
    INSERT INTO bikeways_demand (segment, suggestions, mean_comfort, last_suggested_at, refreshed_at)
    SELECT segment, count(*), round(avg(comfort), 2), max(submitted_at), now()
    FROM bikeways_input
    GROUP BY segment;
    GET DIAGNOSTICS segments = ROW_COUNT;
    RETURN segments;
END
$$;
