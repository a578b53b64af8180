"""Create or migrate the database schema: `python -m functions.migrate`, the Procfile's
`release:` process on Heroku. Exit codes: 0 done, 1 database unreachable, 2 bad DATABASE_URL."""

import sys

from shared.platform import db, entry, schema


def main() -> int:
    with db.connection() as con:
        version = schema.migrate(con)
    print(f"schema at version {version}")
    return 0


if __name__ == "__main__":
    sys.exit(entry.run_command(main))
