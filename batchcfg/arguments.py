"""The argument table: every command, every flag, its help. Flag types come from
:mod:`batchcfg.settings`, so a value is refused the same way as in the environment or a profile.
A usage error is a :class:`~batchcfg.errors.UsageError`, which :func:`batchcfg.cli.main` prints."""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .errors import EXIT_CHANGES_PENDING, EXIT_LOCKED, UsageError
from .settings import (AUTO_MAX_CONCURRENCY, CANARY_ROWS, DEFAULT_MAX_ROWS, DEFAULT_MAX_UNAVAILABLE,
                       DEFAULT_PROGRESS_INTERVAL, DEFAULT_RATE, FLAGS, MAX_LOCK_WAIT, SANDBOX_HOST, SANDBOX_PORT,
                       SETTINGS)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage error, with the nearest command for a mistyped one, and where help is."""
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            choices = re.findall(r"'?([\w-]+)'?", wrong.group(2))
            near = difflib.get_close_matches(wrong.group(1), choices, n=1)
            message = f"no command {wrong.group(1)!r}" + (f" (did you mean {near[0]!r}?)" if near else "") + \
                      f"; commands: {', '.join(choices)}"
        raise UsageError(f"{message} (see 'batchcfg {self.prog.split()[-1]} --help')"
                         if " " in self.prog else message)


def _type(name: str) -> Callable[[str], Any]:
    """The flag type of a setting: its parser from :mod:`batchcfg.settings`, with argparse's
    message for a refused value."""
    parse = SETTINGS[name].parse if name in SETTINGS else FLAGS[name]

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} {exc}") from None
    convert.__name__ = name
    return convert


def _delimiter(text: str) -> str:
    """``--delimiter``: checked by the manifest reader, which knows the separators (imported only
    when the flag is given: --help stays fast)."""
    from .errors import ManifestError
    from .manifest import parse_delimiter

    try:
        return parse_delimiter(text)
    except ManifestError:
        raise argparse.ArgumentTypeError(f"{text!r}: use ',', ';' or tab") from None


OVERVIEW = """examples:
  batchcfg apply samples/training_job_configs.csv --sandbox    try it: no cloud, no credentials
  batchcfg validate configs.csv                                check a manifest offline; send nothing
  batchcfg plan configs.csv --profile prod                     what apply would change
  batchcfg apply configs.csv --profile prod                    change the configs (asks first, at a terminal)
  batchcfg rollback 'batchcfg-backup-*.jsonl' --profile prod   put them back
  batchcfg apply configs.csv --profile prod --lock /run/batchcfg.lock --lock-wait 600
                                                               from cron: one run at a time
  batchcfg completion bash > ~/.local/share/bash-completion/completions/batchcfg
  batchcfg COMMAND --help                                      a command's flags, and examples"""

EXAMPLES = {
    "validate": """examples:
  batchcfg validate configs.xlsx --sheet Migration
  batchcfg validate configs.csv --failed-manifest to-fix.csv""",
    "apply": """examples:
  batchcfg apply samples/training_job_configs.csv --sandbox      try it: no cloud, no credentials
  batchcfg apply configs.csv --region cn-north-4 --project-id 0123456789abcdef0123456789abcdef
  batchcfg apply configs.csv --profile prod --yes --resume batchcfg-report-20261201T101500Z.csv""",
    "plan": """examples:
  batchcfg plan configs.csv --region cn-north-4 --project-id 0123456789abcdef0123456789abcdef
  batchcfg plan configs.csv --profile prod --detailed-exitcode     exit 3 when changes are pending""",
    "export": """examples:
  batchcfg export current.xlsx --region cn-north-4 --project-id 0123456789abcdef0123456789abcdef
  batchcfg export resnets.csv --profile prod --name 'resnet-*'""",
    "rollback": """examples:
  batchcfg rollback batchcfg-backup-20261201T101500Z.jsonl --profile prod --dry-run
  batchcfg rollback 'batchcfg-backup-*.jsonl' --profile prod""",
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batchcfg", description="Change many ModelArts training job configurations "
                                                  "from one CSV or Excel manifest.",
                     epilog=OVERVIEW, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"batchcfg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    common = _Parser(add_help=False)
    logging = common.add_argument_group("logs and locking")
    logging.add_argument("-v", "--verbose", action="count", default=0, help="log every attempt")
    logging.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    logging.add_argument("--log-format", choices=("text", "json"), default="text",
                         help="log lines as text (default) or one JSON object a line")
    logging.add_argument("--log-file", type=Path, metavar="PATH", help="also append the log to this file")
    logging.add_argument("--lock", type=Path, metavar="PATH",
                         help=f"hold this lock file for the run; if another run holds it, exit {EXIT_LOCKED} "
                              "(at once, unless --lock-wait)")
    logging.add_argument("--lock-wait", type=_type("lock_wait"), metavar="SECONDS",
                         help="with --lock: wait this long for another run to let go of it (default 0: do not "
                              f"wait; at most {MAX_LOCK_WAIT:g}; also BATCHCFG_LOCK_WAIT or a profile's lock_wait)")

    profile = _Parser(add_help=False)
    settings = profile.add_argument_group("settings")
    settings.add_argument("--config", type=Path, metavar="PATH",
                          help="config file with profiles (default: ./batchcfg.toml, then "
                               "~/.config/batchcfg/config.toml)")
    settings.add_argument("--profile", metavar="NAME", help="the profile to use (default: BATCHCFG_PROFILE, "
                                                            "else 'default' if the file has one)")

    def command(name: str, help: str, parents: list[_Parser]) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=parents, help=help, epilog=EXAMPLES.get(name),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    def input_options(command: argparse.ArgumentParser) -> argparse._ArgumentGroup:
        group = command.add_argument_group("input")
        group.add_argument("manifest", type=Path, help="the .csv, .xlsx, .xlsm or .jsonl manifest (apply: or a "
                                                       "plan saved with plan --out)")
        group.add_argument("--sheet", help="the Excel sheet to read, by name (any case) or position from 1 "
                                           "(default: the first)")
        group.add_argument("--encoding", help="the CSV file's encoding (default: UTF-8, BOM or not)")
        group.add_argument("--delimiter", type=_delimiter, metavar="SEP",
                           help="the CSV file's separator: ',', ';' or tab (default: found in the header, "
                                "else ',')")
        group.add_argument("--replace", action="store_true",
                           help="each row is the whole config: fields it leaves empty are removed "
                                "(default: a row changes only the fields it names)")
        group.add_argument("--max-rows", type=_type("max_rows"), metavar="N",
                           help=f"refuse a manifest of more rows (default {DEFAULT_MAX_ROWS})")
        return group

    def output_options(command: argparse.ArgumentParser, *, failed_manifest: bool = False) -> argparse._ArgumentGroup:
        group = command.add_argument_group("outputs")
        group.add_argument("--report", type=Path,
                           help="report file: .csv, .jsonl or .xlsx (default: "
                                "batchcfg-report-{UTC time}.csv in --report-dir)")
        group.add_argument("--report-dir", type=_type("report_dir"), metavar="DIR",
                           help="where the default report goes (default: here)")
        if failed_manifest:
            group.add_argument("--failed-manifest", type=Path, metavar="PATH",
                               help="write the invalid, failed and cancelled rows here (.csv or .xlsx), "
                                    "in the input's columns plus #status and #error, to fix and re-run")
        group.add_argument("--metrics-file", type=Path, metavar="PATH",
                           help="write Prometheus textfile metrics here at the end of the run")
        group.add_argument("--html", type=_type("html"), metavar="PATH",
                           help="write a page of the run here (one self-contained HTML file; also "
                                "BATCHCFG_HTML or a profile's html): totals, errors, changes, sending")
        group.add_argument("--overwrite", action="store_true",
                           help="replace an existing report, failed-row manifest or export file (a backup "
                                "is never replaced)")
        return group

    def connection_options(command: argparse.ArgumentParser) -> None:
        group = command.add_argument_group("connection")
        where = group.add_mutually_exclusive_group()
        where.add_argument("--endpoint", help="API endpoint, e.g. https://modelarts.cn-north-4.myhuaweicloud.com")
        where.add_argument("--region", help="region, e.g. cn-north-4 (see 'batchcfg regions')")
        where.add_argument("--sandbox", action="store_true",
                           help="use an embedded sandbox on loopback (no credentials needed)")
        group.add_argument("--project-id", help="default project id (else HUAWEICLOUD_SDK_PROJECT_ID, "
                                                "the profile, the credentials file)")
        group.add_argument("--token-file", type=Path, help="file holding an IAM token, sent as X-Auth-Token")
        group.add_argument("--ca-bundle", type=Path, metavar="PATH",
                           help="PEM file of extra CA certificates, for a private CA (TLS is always verified)")
        group.add_argument("--allow-http", action="store_true",
                           help="allow a plain http:// endpoint that is not on this machine")
        group.add_argument("--max-retries", type=_type("max_retries"), help="retries per request (default 5)")
        group.add_argument("--timeout", type=_type("timeout"), help="seconds per attempt (default 30)")

    def sending_options(command: argparse.ArgumentParser) -> argparse._ArgumentGroup:
        group = command.add_argument_group("sending")
        group.add_argument("--rate", type=_type("rate"),
                           help=f"requests started per second, 0 = no limit (default {DEFAULT_RATE:g})")
        group.add_argument("--concurrency", type=_type("concurrency"), metavar="N|auto",
                           help="requests in flight; auto (the default): enough to sustain --rate at "
                                f"the latency seen, up to {AUTO_MAX_CONCURRENCY}")
        group.add_argument("--max-failures", type=_type("max_failures"), metavar="N",
                           help="stop after N failed rows; the rest end cancelled (default: no limit)")
        group.add_argument("--max-unavailable", type=_type("max_unavailable"), metavar="N",
                           help="stop when N rows in a row fail because the service is unavailable (408, "
                                "429, 500, 502, 503, 504, throttling, timeouts, no connection) with no success "
                                f"between (default {DEFAULT_MAX_UNAVAILABLE}; 0 = never)")
        group.add_argument("--deadline", type=_type("deadline"), metavar="SECONDS",
                           help="stop starting rows after this long; the rest end cancelled, ready to --resume")
        group.add_argument("--no-preflight", action="store_true",
                           help="skip the first read (List, one config) that checks the endpoint, the credentials "
                                "and the project before anything else (for a server without List)")
        group.add_argument("--no-progress", action="store_true", help="no progress bar")
        group.add_argument("--progress-interval", type=_type("progress_interval"), default=DEFAULT_PROGRESS_INTERVAL,
                           metavar="SECONDS", help="without a terminal, log progress this often "
                                                   f"(default {DEFAULT_PROGRESS_INTERVAL:g}; 0 = never)")
        return group

    yes = "do not ask for confirmation (asked only on a terminal, against a real endpoint)"
    verify = (f"read every changed config back and compare it with what was sent (default: the first "
              f"{CANARY_ROWS}, the canary; also BATCHCFG_VERIFY or a profile's verify)")

    validate = command("validate", "check the manifest; send nothing", [common, profile])
    input_options(validate).add_argument(
        "--online", action="store_true", help="also check spec_id, worker_server_num and engine_id against each "
                                              "project's resource specs and engines (reads only)")
    output_options(validate, failed_manifest=True)
    connection_options(validate)

    apply = command("apply", "validate, then send every valid row", [common, profile])
    input_options(apply)
    output_options(apply, failed_manifest=True)
    connection_options(apply)
    sending_options(apply)
    doing = apply.add_argument_group("what apply does")
    doing.add_argument("--resume", type=Path, metavar="PATH",
                       help="an earlier report or journal: skip the rows it shows succeeded "
                            "(same project, config name and request body)")
    doing.add_argument("--dry-run", action="store_true", help="do everything but send")
    doing.add_argument("--preflight", action="store_true",
                       help="first check spec_id, worker_server_num and engine_id against each "
                            "project's resource specs and engines")
    doing.add_argument("--yes", action="store_true", help=yes)
    doing.add_argument("--verify", action="store_const", const=True, help=verify)
    doing.add_argument("--create-missing", action="store_true",
                       help="create a config that does not exist (POST), instead of failing its row; "
                            "rollback deletes it again")
    unchanged = doing.add_mutually_exclusive_group()
    unchanged.add_argument("--skip-unchanged", action="store_true",
                           help="send nothing for rows that would change nothing (the default)")
    unchanged.add_argument("--send-unchanged", action="store_true", help="PUT rows that would change nothing too")
    keep = doing.add_mutually_exclusive_group()
    keep.add_argument("--backup", type=Path, metavar="PATH",
                      help="where to save each config before it is changed (default: "
                           "batchcfg-backup-{UTC time}.jsonl beside the report)")
    keep.add_argument("--no-backup", action="store_true", help="change configs without saving them first")

    plan = command("plan", "read each row's config and show what apply would change", [common, profile])
    input_options(plan)
    output_options(plan)
    connection_options(plan)
    sending_options(plan)
    planning = plan.add_argument_group("what plan does")
    planning.add_argument("--detailed-exitcode", action="store_true",
                          help=f"exit {EXIT_CHANGES_PENDING} when every row could be planned and some would change "
                               "(0: nothing to change; 1: rows invalid or failed)")
    planning.add_argument("--out", dest="plan_out", type=Path, metavar="FILE",
                          help="save the plan, every row with its changes (.jsonl or .json, JSON lines; an "
                               "existing file only with --overwrite): 'batchcfg apply FILE' sends exactly that, "
                               "refusing rows whose config changed since")
    planning.add_argument("--create-missing", action="store_true",
                          help="show a config that does not exist as one apply --create-missing would create")

    export = command("export", "write the project's current configs as a manifest apply reads back",
                     [common, profile])
    chosen = export.add_argument_group("what to export")
    chosen.add_argument("output", type=Path, metavar="OUTPUT", help="the manifest to write: .csv, .xlsx or .jsonl")
    chosen.add_argument("--name", dest="name_pattern", metavar="PATTERN",
                        help="only configs whose names match, e.g. 'resnet-*' (* ? [...] as in a shell)")
    chosen.add_argument("--config-type", metavar="TYPE", help="only configs of this type (List's config_type)")
    chosen.add_argument("--project-column", action="store_true",
                        help="write each row's project_id (default: none, so apply sends to its own --project-id)")
    output_options(export)
    connection_options(export)
    sending_options(export)

    rollback = command("rollback", "put the configs of one or more backups back", [common, profile])
    undo = rollback.add_argument_group("what to put back")
    undo.add_argument("backup_file", type=Path, nargs="+", metavar="BACKUP",
                      help="backup files written by apply (or a quoted glob such as 'batchcfg-backup-*'): "
                           "the newest is rolled back first")
    undo.add_argument("--force", action="store_true", help="also restore configs that changed since the run")
    undo.add_argument("--yes", action="store_true", help=yes)
    undo.add_argument("--verify", action="store_const", const=True, help=verify)
    undo.add_argument("--dry-run", action="store_true", help="send nothing: show what would be restored and what conflicts")
    output_options(rollback)
    connection_options(rollback)
    sending_options(rollback)

    config = commands.add_parser("config", help="the settings a run would use")
    config_commands = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    show = config_commands.add_parser("show", parents=[profile],
                                      help="print each setting, where it comes from, and the credentials found")
    connection_options(show)
    sending_options(show).add_argument("--report-dir", type=_type("report_dir"), metavar="DIR",
                                       help="where the default report goes")
    names = config_commands.add_parser("profiles", help="list the config file's profiles (for shell completion)")
    names.add_argument("--config", type=Path, metavar="PATH",
                       help="config file (default: ./batchcfg.toml, then ~/.config/batchcfg/config.toml)")

    commands.add_parser("regions", help="list the ModelArts regions --region knows")
    completion = commands.add_parser("completion", help="print a shell completion script (bash, zsh or tcsh)",
                                     epilog="example:\n  batchcfg completion bash > ~/.local/share/bash-completion/"
                                            "completions/batchcfg", formatter_class=argparse.RawDescriptionHelpFormatter)
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"))

    sandbox = commands.add_parser("sandbox", parents=[common], help="run the embedded stand-in for the API")
    sandbox.add_argument("--host", default=SANDBOX_HOST, help=f"address to bind (default {SANDBOX_HOST})")
    sandbox.add_argument("--port", type=_type("port"), default=SANDBOX_PORT,
                         help=f"port (default {SANDBOX_PORT}; 0 = any free port)")
    sandbox.add_argument("--project-id", help="the project it serves (default: a fixed test project)")
    sandbox.add_argument("--token", help="the IAM token it accepts (default: a fixed test token)")
    sandbox.add_argument("--ak", help="the AK it accepts (default: a fixed test AK)")
    sandbox.add_argument("--sk", help="the SK of that AK (default: a fixed test SK)")
    sandbox.add_argument("--fail-rate", type=_type("fail_rate"), default=0.0, help="share of requests answered 503 (0-1)")
    sandbox.add_argument("--throttle-rps", type=_type("throttle_rps"), default=0.0,
                         help="requests accepted per second; beyond: 429 APIGW.0308 (0 = no limit)")
    sandbox.add_argument("--latency-ms", type=_type("latency_ms"), default=0.0, help="delay added to every answer")
    sandbox.add_argument("--seed", type=Path, metavar="FILE",
                         help="configs to hold from the start: JSON lines of config_name (and "
                              "project_id) with the writable fields")
    sandbox.add_argument("--create-missing", action="store_true",
                         help="let a PUT create a config it does not hold (the real API answers 404)")
    sandbox.add_argument("--put-semantics", choices=("replace", "merge", "ignore-empty"), default="replace",
                         help="what Modify does with a body: replace the config (default), merge into it (fields "
                              "left out are kept), or merge ignoring empty values; to see apply's read-back at work")
    return parser


PROFILES_COMMAND = "batchcfg config profiles 2>/dev/null"  # run at each completion: the file may change


def with_completions(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser``, with the values shell completion offers (shtab reads an action's ``complete``):
    the regions ``--region`` knows, and for ``--profile`` the config file's profiles, listed by
    ``batchcfg config profiles`` as the shell completes. For ``batchcfg completion``; kept out of
    :func:`build_parser`, so that ``--help`` does not import the region table."""
    from .endpoints import REGIONS

    regions = " ".join(REGIONS)
    values = {
        "region": {"bash": "_batchcfg_regions", "zsh": f"({regions})", "tcsh": f"({regions})",
                   "preamble": {"bash": f'_batchcfg_regions() {{ compgen -W "{regions}" -- "$1"; }}'}},
        "profile": {"bash": "_batchcfg_profiles", "zsh": "_batchcfg_profiles", "tcsh": "`batchcfg config profiles`",
                    "preamble": {
                        "bash": f'_batchcfg_profiles() {{ compgen -W "$({PROFILES_COMMAND})" -- "$1"; }}',
                        "zsh": f'_batchcfg_profiles() {{ compadd -- ${{(f)"$({PROFILES_COMMAND})"}}; }}'}},
    }
    for action in _actions(parser):
        if action.dest in values:
            setattr(action, "complete", values[action.dest])
    return parser


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every action of ``parser`` and of its subcommands, nested ones too."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
