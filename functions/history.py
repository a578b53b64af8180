"""The history_tools, by hand: `python -m functions.history list | show | diff | test | delete | prune`
(see --help). The work is in shared/app/history_tools.py; errors are one line (exit 2: bad input)."""

import sys

from shared.app import entry, history_tools
from shared.app.kinds import KINDS
from shared.app.report.model import database_failure


def main(argv: list[str] | None = None) -> int:
    parser = entry.argument_parser(prog="python -m functions.history",
                                     description="Look at the history in $DATABASE_URL, try a job's filters, prune.",
                                     epilog="Versions are numbered from 1, the oldest kept. Times are UTC. Exit codes: "
                                            "0 done, 1 a fetch or the database failed, 2 bad usage or input.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="every target and refresh job: checks, changes, first and last check, "
                                     "failure streak, stored size")
    show = commands.add_parser("show", help="a target's versions, newest first; with VERSION, its body")
    show.add_argument("name")
    show.add_argument("version", nargs="?", type=int)
    diff = commands.add_parser("diff", help="unified diff from version A to B (default: the last change; "
                                            "A alone: from A to the current version)")
    diff.add_argument("name")
    diff.add_argument("a", nargs="?", type=int, metavar="A")
    diff.add_argument("b", nargs="?", type=int, metavar="B")
    test = commands.add_parser("test", help="fetch the [[scrape]] job NAME now, apply its filters, print what would "
                                            "be stored and the diff against the current version; stores nothing, "
                                            "notifies nobody")
    test.add_argument("name")
    delete = commands.add_parser("delete", help="drop a job's whole history (a target's, a refresh job's)")
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", help="really")
    delete.add_argument("--kind", choices=tuple(KINDS), help="when jobs of several kinds have that name")
    prune = commands.add_parser("prune", help="drop versions, check times and failed checks older than N days "
                                              "(the current version stays)")
    prune.add_argument("--keep-days", type=int, required=True, metavar="N")
    prune.add_argument("--job", action="append", metavar="NAME", help="only this target (repeatable; default: all)")
    args = parser.parse_args(argv)

    def body() -> int:
        try:
            return history_tools.run(args.command, vars(args))
        except Exception as exc:  # an SQL error is one line, never a traceback
            raise database_failure(exc, f"history {args.command}") from None

    return entry.run_command(body)


if __name__ == "__main__":
    sys.exit(main())
