"""Check web pages and keep their history: `python -m functions.scrape [--job NAME] [--url URL]`
(see --help), or the Lambda handler `functions.scrape.handler`. The work is in shared/scrape/."""

import sys

from shared.app import entry

handler = entry.lambda_handler("scrape")


def main(argv=None) -> int:
    return entry.command_line("scrape", argv)


if __name__ == "__main__":
    sys.exit(main())
