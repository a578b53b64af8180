"""`python -m devtools.carto_emulator` (`make carto-emulator`): serve the emulator until Ctrl-C,
over $DATABASE_URL, else the local PostgreSQL of .local/pgdata."""

import argparse
import os
import time
from pathlib import Path

from devtools.carto_emulator import CartoEmulator


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.carto_emulator",
                                     description="A local stand-in for CARTO's SQL API.")
    parser.add_argument("--user", default="demo")
    parser.add_argument("--api-key", default="demo-master-key")
    parser.add_argument("--statement-timeout-ms", type=int, default=5000)
    parser.add_argument("--v3-token", help="a CARTO 3 access token for the user (default: CARTO 3 is off)")
    parser.add_argument("--v3-sync-limit", type=float, default=60.0, help="seconds (default: CARTO's 60)")
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    args = parser.parse_args(argv)
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        from devtools import localpg
        database_url = localpg.ensure_server(Path(__file__).resolve().parents[2] / ".local" / "pgdata")
    emulator = CartoEmulator(database_url, {args.user: args.api_key}, statement_timeout_ms=args.statement_timeout_ms,
                             v3_tokens={args.v3_token: args.user} if args.v3_token else None,
                             v3_sync_limit=args.v3_sync_limit, port=args.port)
    emulator.start()
    print(f"CARTO SQL API emulator: {emulator.sql_url(args.user)} (Ctrl-C stops it)")
    print(f"  user {args.user}, API key {args.api_key}: a [[refresh]] job for it:")
    print(f'  [[refresh]]\n  name = "local"\n  sql_api_url = "{emulator.sql_url(args.user)}"\n'
          f'  api_key = "{args.api_key}"', flush=True)
    if args.v3_token:
        print(f"CARTO 3: {emulator.base_url} (connection: any name, access token {args.v3_token})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
