"""Create or migrate the database schema: the Procfile's `release:` process on Heroku.

    python -m functions.migrate
"""

import sys

from shared import db, log, storage


def main() -> int:
    log.setup()
    try:
        con = db.connect()
    except (db.DatabaseConfigError, ConnectionError) as exc:
        print(f"error: {log.redact(str(exc))}", file=sys.stderr)
        return 2 if isinstance(exc, db.DatabaseConfigError) else 1
    try:
        version = storage.migrate(con)
    finally:
        con.close()
    print(f"schema at version {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
