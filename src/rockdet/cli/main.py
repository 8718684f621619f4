"""The `rockdet` command: one parser, one handler per subcommand, and every error as one line."""

from __future__ import annotations

import sys

from rockdet.cli import predict_commands, training_commands
from rockdet.cli.parser import build_parser, flag_of
from rockdet.console import configure_console
from rockdet.errors import RockdetError, SettingsError

HANDLERS = {
    "train": training_commands.train,
    "evaluate": training_commands.evaluate,
    "pseudo-label": training_commands.pseudo_label,
    "data-report": training_commands.data_report,
    "synth": training_commands.synth,
    "predict": predict_commands.predict,
    "export": predict_commands.export,
    "report": predict_commands.report,
    "sfd": predict_commands.sfd,
}


def main(args: list[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(args)
    configure_console(options.quiet, options.verbose)
    try:
        return int(HANDLERS[options.command](options) or 0)
    except SettingsError as exc:  # a setting named by its field: the command line names its flag
        print(f"rockdet: error: {flag_of(exc.key)}: {exc.detail}", file=sys.stderr)
        return 2
    except RockdetError as exc:
        print(f"rockdet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rockdet: interrupted; finished outputs are kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
