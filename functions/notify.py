"""Check the notification channels before they are needed: `python -m functions.notify --test
[--job NAME]` sends a test message to each distinct channel of the jobs file (every job's
`notify`, and $NOTIFY_URLS for the jobs without their own) and prints one line per channel:
its service and host, then `sent` or why not. The work is in shared/app/channels.py.

Exit codes: 0 every channel took the message, 1 one did not, 2 bad usage or a job that cannot be used.
"""

import sys

from shared.app import channels, entry


def main(argv: list[str] | None = None) -> int:
    parser = entry.argument_parser(prog="python -m functions.notify",
                                   description="Send a test message to every notification channel of the jobs file.")
    parser.add_argument("--test", action="store_true", required=True, help="send the test messages")
    parser.add_argument("--job", action="append", metavar="NAME", help="only this job's channels (repeatable)")
    args = parser.parse_args(argv)
    return entry.run_command(lambda: channels.test(args.job))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
