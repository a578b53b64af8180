"""Run refresh statements on CARTO or PostgreSQL: `python -m functions.carto_refresh [--job NAME]`
(see --help), or the Lambda handler `functions.carto_refresh.handler`. The work is in shared/refresh/."""

import sys

from shared.app import entry

handler = entry.lambda_handler("carto_refresh")


def main(argv=None) -> int:
    return entry.command_line("carto_refresh", argv)


if __name__ == "__main__":
    sys.exit(main())
