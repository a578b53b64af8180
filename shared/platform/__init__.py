"""What every job kind stands on: the entry adapter (entry), Lambda events (events), SSM
secrets (secrets), redacting logs (log), PostgreSQL connections (db) and schema (schema),
schedules (schedule), shards (shard) and the AWS fan-out (dispatch)."""
