"""The command line: parse, call one job (mcdata.jobs) or read (mcdata.reading), render, map errors to exit
codes; plus what only a terminal needs (shell completion, logging to stderr, SIGTERM)."""

from __future__ import annotations

import functools
import inspect
import io
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from mcdata import __version__
from mcdata.config import SETTINGS, Settings, load_settings, reset_warnings
from mcdata.errors import (
    ConfigError,
    ExitCode,
    McdataError,
    Terminated,
    classify,
    did_you_mean,
    interrupted_code,
    printable,
    redact,
)
from mcdata.wording import FORMAT_NAMES, FORMATS_HELP, plural

if TYPE_CHECKING:
    from mcdata.jobs import Progress, Report

app = typer.Typer(
    name="mcdata",
    help="Fetch crypto pair prices every hour, store them in SQLite or PostgreSQL, compute and show metrics.\n\n"
    "Example: mcdata run && mcdata show btceur",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
log = logging.getLogger("mcdata")

F = TypeVar("F", bound=Callable[..., Any])


FLAGGED_SETTINGS: set[str] = set()  # the settings that have a flag; the others: env var or config file only


def _option(name: str, *decls: str, **kwargs: Any) -> Any:
    """A flag for a declared setting: its env var and help come from mcdata.config."""
    setting = SETTINGS[name]
    FLAGGED_SETTINGS.add(name)
    return typer.Option(
        *(decls or (f"--{name.replace('_', '-')}",)),
        envvar=setting.envvar,
        help=setting.help,
        show_default=False,
        **kwargs,
    )


def complete_formats(incomplete: str) -> list[str]:
    return [name for name in FORMAT_NAMES if name.startswith(incomplete.lower())]


def complete_pairs(incomplete: str) -> list[str]:
    """The stored pairs (else the configured ones) for shell completion; `btceur,et` completes the last one."""
    from mcdata.reading import known_pairs

    done, _, last = incomplete.lower().rpartition(",")
    try:
        pairs = known_pairs(load_settings({}))
    except Exception:  # completion must never print an error into the user's shell
        pairs = []
    return [f"{done},{pair}" if done else pair for pair in pairs if pair.startswith(last)]


def exchange_option(help_text: str | None = None, *, from_env: bool = True) -> Any:
    """`--exchange VENUE`, declared once: a fetching command's (the setting's help and env var), or a
    reading command's, whose help says what it chooses (`show` reads every venue unless told: no env var)."""
    setting = SETTINGS["exchange"]
    FLAGGED_SETTINGS.add("exchange")
    return typer.Option("--exchange", metavar="VENUE", envvar=setting.envvar if from_env else None,
                        show_default=False, help=help_text or setting.help)



DatabaseUrl = Annotated[str | None, _option("database_url", metavar="URL")]
# The options of the commands that talk to a source, declared once (sqlite-utils' shared option decorators)
SOURCE_OPTIONS: dict[str, Any] = {
    "source": Annotated[str | None, _option("source", metavar="NAME")],
    "api_url": Annotated[str | None, _option("api_url", metavar="URL")],
    "exchange": Annotated[str | None, exchange_option()],
    # repeatable: `-p btceur -p etheur` is `--pairs btceur,etheur`
    "pairs": Annotated[list[str] | None, _option("pairs", "--pairs", "-p", metavar="PAIRS",
                                                  autocompletion=complete_pairs)],
    "backfill": Annotated[str | None, _option("backfill", metavar="DURATION")],
}
# `--exchange` of the commands that only read the database: it chooses what is shown or changed
OVERVIEW_ROWS = 50  # the table's pairs unless --all or --limit: a person reads the top of a ranking
READ_EXCHANGE_HELP = {
    "status": "Watch this venue's pairs (several separated by commas; default: the configured venues). "
              "It only reads the database, so any venue mcdata stored works, whatever --source is.",
    "prices": "The venue of the series to change (default: the configured one).",
    "show": "Only this venue's pairs (ranks are among the pairs of one venue); with PAIR: the venue, when the "
            "pair has metrics on several. Default: every venue stored.",
}
Keep = Annotated[str | None, _option("retention", "--keep", metavar="DURATION")]
MaxAge = Annotated[str | None, _option("max_age", metavar="DURATION")]
FormatArg = Annotated[str | None, typer.Argument(metavar="FORMAT", show_default=False, autocompletion=complete_formats,
                                                 help=FORMATS_HELP)]
FormatOpt = Annotated[str | None, typer.Option("--format", "-f", metavar="FORMAT", autocompletion=complete_formats,
                                               help=FORMATS_HELP)]
PairArg = Annotated[str, typer.Argument(metavar="PAIR", autocompletion=complete_pairs,
                                        help="The pair, such as btceur.")]
AsOf = Annotated[
    str | None,
    typer.Option("--as-of", metavar="TIME", help="As-of time, ISO 8601 (UTC when no offset is given). Default: now."),
]


def source_options(*names: str, exchange_help: str | None = None) -> Callable[[F], F]:
    """Add the named SOURCE_OPTIONS to a command; it receives their values as `source_flags`. A command
    that reads the database says with `exchange_help` what its --exchange chooses."""
    options = dict(SOURCE_OPTIONS)
    if exchange_help:
        options["exchange"] = Annotated[str | None, exchange_option(exchange_help)]

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "source_flags"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=options[name])
                 for name in names]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            flags = {name: kwargs.pop(name, None) for name in names}
            if isinstance(flags.get("pairs"), list):
                flags["pairs"] = ",".join(flags["pairs"]) or None
            return fn(*args, source_flags=flags, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


@dataclass
class CliState:
    flags: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None
    debug: bool = False
    quiet: bool = False

    def settings(self, **command_flags: Any) -> Settings:
        return load_settings({**self.flags, **command_flags}, config_file=self.config_file)

    def database_settings(self, **command_flags: Any) -> Settings:
        """For a command that works on the database alone, never the source: the venues it names need not
        be ones the configured source can fetch, and a bad alert rule is a warning (load_settings)."""
        return load_settings({**self.flags, **command_flags}, config_file=self.config_file, fetching=False)

    def alert_settings(self, fetching: bool = False, **command_flags: Any) -> Settings:
        """For `run` and `mcdata alerts`, which use the rules: a bad one, or a bad notify URL, is exit 2."""
        return load_settings({**self.flags, **command_flags}, config_file=self.config_file, fetching=fetching,
                             uses_alerts=True)

    def shown_settings(self) -> Settings:
        """For `mcdata config`, which must show the settings whatever a rule or notify URL says (it says what
        is wrong with them in a warning)."""
        from mcdata.config import check_notify_urls

        settings = load_settings(self.flags, config_file=self.config_file)
        if settings.notify:
            try:
                check_notify_urls(settings.notify)
            except ConfigError as error:
                log.warning("warning: %s", error)
        return settings


def _state(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    return state if isinstance(state, CliState) else CliState()


def stamp() -> str:
    """Cron logs and container logs get the time on each line (ISO 8601, UTC); a terminal does not."""
    if sys.stderr.isatty():
        return ""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ ")


def say(line: str) -> None:
    sys.stderr.write(f"{stamp()}{line}\n")


def write_traceback(error: BaseException) -> None:
    """For --debug; server text may sit in the exception's message: escaped like every other line."""
    trace = redact("".join(traceback.format_exception(error)))
    sys.stderr.write("".join(printable(line) + "\n" for line in trace.splitlines()))


def report_and_exit(error: BaseException, debug: bool) -> None:
    """The one place where errors become a line on stderr and an exit code."""
    if debug:
        write_traceback(error)
    code, message = classify(error)
    if message.startswith("unexpected ") and not debug:
        message += " (rerun with --debug for the traceback)"
    say(f"mcdata: error: {printable(message.splitlines()[0] if message else '')}")
    raise typer.Exit(int(code))


prices_app = typer.Typer(
    help="Correct stored prices: delete a range, or set one price. The pair's rollups and every metric "
    "snapshot the change reaches are rebuilt in the same transaction (the raw table refuses UPDATE and "
    "DELETE from anyone else).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(prices_app, name="prices")


def command(fn: F, on: typer.Typer = app, name: str | None = None, hidden: bool = False) -> F:
    """Register a subcommand whose McdataErrors map to their exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        debug = _state(ctx).debug if ctx is not None else False
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # here, not at exit: click would make a closed pipe exit 1
            return result
        except (typer.Exit, typer.Abort):
            try:  # the command's own exit code stands, whether the reader is still there or not
                sys.stdout.flush()
            except BrokenPipeError:
                _silence_stdout()
            raise
        except BrokenPipeError:  # `mcdata show | head`: the reader has gone; so do we, quietly
            _silence_stdout()
            raise typer.Exit(0) from None
        except KeyboardInterrupt as interrupt:
            say(f"mcdata: {classify(interrupt)[1]}")
            raise typer.Exit(interrupted_code(interrupt)) from None
        except Exception as error:
            report_and_exit(error, debug)

    return on.command(name, hidden=hidden)(wrapper)  # type: ignore[return-value]


def prices_command(fn: F) -> F:
    """A subcommand of `mcdata prices`: prices_set is `mcdata prices set`."""
    return command(fn, on=prices_app, name=fn.__name__.removeprefix("prices_"))


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mcdata {__version__}")
        raise typer.Exit()


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is logged (not the stream of the first command)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class _SafeFormatter(logging.Formatter):
    """Every log line is scrubbed of secrets and of control characters (server text included)."""

    def format(self, record: logging.LogRecord) -> str:
        return stamp() + printable(redact(super().format(record)))


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _CurrentStderr()
    handler.setFormatter(_SafeFormatter("mcdata: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


@app.callback()
def main_options(
    ctx: typer.Context,
    database_url: DatabaseUrl = None,
    config: Annotated[
        str | None,
        typer.Option("--config", envvar="MCDATA_CONFIG", show_envvar=True, metavar="PATH",
                     help="TOML config file with the same settings (default: the user config dir)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say more, including HTTP details.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only problems (for cron).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    _configure_logging(verbose, quiet)
    reset_warnings()
    ctx.obj = CliState(flags={"database_url": database_url}, config_file=config, debug=debug, quiet=quiet)


@command
def migrate(
    ctx: typer.Context,
    revision: Annotated[str, typer.Option("--revision", metavar="REV",
                                          help="Target revision (default: the newest).")] = "head",
) -> None:
    """Create or upgrade the database schema (safe any time).

    Example: mcdata --database-url sqlite:////tmp/x.db migrate
    """
    from mcdata import jobs

    settings = _state(ctx).database_settings()
    before, after = jobs.migrate(settings, revision)
    if before == after:
        log.info("database already at revision %s; nothing to do", after)
    else:
        log.info("database migrated from %s to revision %s", before or "empty", after)
    typer.echo(after or "base")


@command
@source_options("source", "api_url", "exchange", "pairs", "backfill")
def fetch(ctx: typer.Context, source_flags: dict[str, str | None]) -> None:
    """Fetch latest prices, backfill and repair history from candles.

    One request fetches the price of every pair. A pair seen for the first time gets --backfill of
    hourly candles; a pair whose newest sample is over 90 minutes old (a missed run) gets the missing hours.

    Example: mcdata fetch --pairs btceur,ethusd
    """
    from mcdata import jobs

    _exit_with(ctx, jobs.fetch(*_source_job(ctx, source_flags)))


@command
def compute(
    ctx: typer.Context,
    as_of: AsOf = None,
    delete: Annotated[bool, typer.Option("--delete", help="Delete the metrics of --as-of instead.")] = False,
) -> None:
    """Compute every pair's metrics as of now (or --as-of, not later than now).

    Re-running for the same as-of time replaces that time's metrics; --delete removes them.

    Example: mcdata compute --as-of 2026-11-24T12:00
    """
    from mcdata import jobs
    from mcdata.values import parse_timestamp

    settings = _state(ctx).database_settings()
    moment = parse_timestamp(as_of) if as_of else None
    if delete:
        if moment is None:
            raise ConfigError("--delete needs --as-of", "for example: mcdata compute --delete --as-of 2030-01-01")
        _exit_with(ctx, jobs.delete_metrics(settings, moment))
        return
    _exit_with(ctx, jobs.compute(settings, as_of=moment))


@command
def show(
    ctx: typer.Context,
    pair: Annotated[str | None, typer.Argument(
        metavar="PAIR", show_default=False, autocompletion=complete_pairs,
        help="A pair such as btceur; all pairs when omitted.")] = None,
    output_format: FormatArg = None,
    format_option: FormatOpt = None,
    exchange: Annotated[str | None, exchange_option(READ_EXCHANGE_HELP["show"], from_env=False)] = None,
    history: Annotated[int, typer.Option("--history", min=1, max=10_000, metavar="ROWS",
                                         help="Rows of metric history.")] = 24,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, metavar="N", show_default=False,
        help=f"Show the first N pairs. Default: {OVERVIEW_ROWS} in the table, every pair in JSON and CSV.")] = None,
    every_row: Annotated[bool, typer.Option("--all", help="Show every pair in the table too.")] = False,
    sort: Annotated[str, typer.Option(
        "--sort", metavar="ORDER",
        help="rank (by 24 h stddev, within each venue), stddev, volatility, change (24 h, largest first), "
             "price or pair.")] = "rank",
    only: Annotated[str | None, typer.Option(
        "--pairs", metavar="PAIRS", show_default=False, autocompletion=complete_pairs,
        help="Only these pairs, comma-separated.")] = None,
) -> None:
    """Show metrics: the pairs ranked, or one pair with a chart.

    FORMAT is table (default), json or csv; JSON and CSV go plainly to stdout for scripts, every pair
    unless --limit, written as read. The table shows the first 50 pairs unless --all or --limit and says
    how many it left out.

    Example: mcdata show btceur table
    """
    from mcdata import reading, render, render_metrics
    from mcdata.store import METRIC_SORTS
    from mcdata.values import canonical_pair, check_venue, parse_pairs

    exchange = check_venue(exchange) if exchange is not None else None
    formats = FORMAT_NAMES
    if pair and pair.lower() in formats and (output_format is None or output_format.lower() not in formats):
        pair, output_format = output_format, pair  # `mcdata show json`, `mcdata show csv btceur`
    chosen = _output_format(output_format, format_option)
    if sort not in METRIC_SORTS:
        raise ConfigError(f"unknown order {printable(sort[:40])!r}",
                          did_you_mean(sort, list(METRIC_SORTS)) or f"use one of {', '.join(METRIC_SORTS)}")
    pairs = list(parse_pairs(only)) if only else None
    if pairs == ["all"]:
        pairs = None
    settings = _state(ctx).database_settings()
    if pair is None and chosen != "table" and limit is None:  # every row, streamed
        with reading.streamed_overview(settings, exchange, pairs=pairs, sort=sort) as (head, rows):
            render_metrics.write_overview_streamed(head, rows, chosen, sys.stdout)
        return
    if pair is None:
        shown = None if every_row else limit or (OVERVIEW_ROWS if chosen == "table" else None)
        output = render_metrics.overview_output(reading.overview(
            settings, exchange, pairs=pairs, sort=sort, limit=shown, sparklines=chosen == "table"))
    else:
        output = render_metrics.pair_output(reading.pair_view(settings, canonical_pair(pair), exchange, history))
    render.emit(output, chosen, sys.stdout)


@command
@source_options("source", "api_url", "exchange", "pairs", "backfill")
def run(ctx: typer.Context, source_flags: dict[str, str | None]) -> None:
    """The hourly job: migrate if new, fetch, compute (one lock).

    Exits with the worst step's code: a partial fetch still computes and exits 3; a second run while
    one is working exits 75 at once. With MCDATA_PING_URL it pings a cron monitor (<url>/start, then
    <url>/<exit code>); with MCDATA_METRICS_FILE it rewrites a Prometheus textfile; a run skipped by the
    lock does neither.

    Example: mcdata --quiet run
    """
    from mcdata.jobs.hourly import monitored_run

    _exit_with(ctx, monitored_run(*_source_job(ctx, source_flags, uses_alerts=True)))


@command
@source_options("exchange", exchange_help=READ_EXCHANGE_HELP["status"])
def status(
    ctx: typer.Context,
    source_flags: dict[str, str | None],
    output_format: FormatArg = None,
    format_option: FormatOpt = None,
    max_age: MaxAge = None,
) -> None:
    """Say whether mcdata is healthy: the last run, the last success, each pair's newest sample.

    Exits 0 when healthy; 1 when no run finished within --max-age, the last run failed, or a pair's
    newest sample is older than --max-age (each problem is named); 4 when the database is unreachable
    or behind the newest schema. It only reads: it works while a run holds the lock.

    Example: mcdata status --max-age 3h
    """
    from mcdata import health, render

    chosen = _output_format(output_format, format_option)
    view = health.status(_state(ctx).database_settings(max_age=max_age, **source_flags))
    if not (_state(ctx).quiet and output_format is None and format_option is None):  # --quiet: problems only
        render.emit(render.status_output(view), chosen, sys.stdout)
    for problem in view.problems:
        say(f"mcdata: unhealthy: {printable(problem)}")
    if not view.healthy:
        raise typer.Exit(int(ExitCode.FAILED))


class _AlertsGroup(TyperGroup):
    """`mcdata alerts [FORMAT]` lists the rules' state (the hidden `states` command); `history` and `test`
    are subcommands, each with its own --help."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's vendored click.Context
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["states", *args]
        return super().parse_args(ctx, args)


alerts_app = typer.Typer(
    cls=_AlertsGroup,
    help="Show the alert rules and their state, their history, or send a test notification.\n\n"
    "`mcdata alerts [FORMAT]` lists each rule's markets: firing, ok or not judged yet, and when it last fired.\n\n"
    "Example: mcdata alerts history json --since 1d",
    subcommand_metavar="[FORMAT] | history [FORMAT] | test [NAME]",
    rich_markup_mode=None,
)
app.add_typer(alerts_app, name="alerts")


def alerts_command(fn: F) -> F:
    """A subcommand of `mcdata alerts`: alerts_history is `mcdata alerts history`."""
    name = fn.__name__.removeprefix("alerts_")
    return command(fn, on=alerts_app, name=name, hidden=name == "states")


@alerts_command
def alerts_states(ctx: typer.Context, output_format: FormatArg = None, format_option: FormatOpt = None) -> None:
    """Each rule's markets: firing, ok or not judged yet, and when it last fired."""
    from mcdata import alert_views, render

    if output_format and output_format.lower() not in FORMAT_NAMES:
        raise ConfigError(f"unknown alerts command or format {output_format[:40]!r}",
                          did_you_mean(output_format, [*FORMAT_NAMES, "history", "test"])
                          or "use: mcdata alerts [FORMAT] | history [FORMAT] | test [NAME]")
    chosen = _output_format(output_format, format_option)
    output = render.alerts_output(alert_views.alert_states(_state(ctx).alert_settings()))
    render.emit(output, chosen, sys.stdout)


@alerts_command
def alerts_history(
    ctx: typer.Context,
    output_format: FormatArg = None,
    format_option: FormatOpt = None,
    since: Annotated[str, typer.Option("--since", metavar="DURATION", help="History of the last DURATION.")] = "7d",
) -> None:
    """The alert events of the last --since and their delivery: delivered, pending, given up or no notify URL.

    Example: mcdata alerts history json --since 1d
    """
    from mcdata import alert_views, render
    from mcdata.values import parse_duration

    chosen = _output_format(output_format, format_option)
    settings = _state(ctx).alert_settings()
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise ConfigError(f"--since {since[:40]!r}: {exc}") from None
    render.emit(render.history_output(alert_views.alert_history(settings, window)), chosen, sys.stdout)


@alerts_command
def alerts_test(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(metavar="NAME", show_default=False,
                                               help="A rule's name, said in the test message (it must exist).")]
    = None,
) -> None:
    """Send one test notification through every notify URL; exit 1 if any failed.

    Example: mcdata alerts test btc-spike
    """
    from mcdata import alert_views

    results = alert_views.test_notifications(_state(ctx).alert_settings(), name)
    for label, error in results:
        say(f"mcdata: notify URL {label}: {'sent' if error is None else 'failed: ' + printable(error)}")
    if any(error is not None for _, error in results):
        raise typer.Exit(int(ExitCode.FAILED))


@command
def config(
    ctx: typer.Context,
    output_format: FormatArg = None,
    format_option: FormatOpt = None,
) -> None:
    """Show every setting's effective value and where it came from (flag, env var, _FILE, config file,
    default), secrets masked, the database in use and the config file looked at.

    Example: mcdata config json
    """
    from mcdata import render
    from mcdata.config_view import describe

    chosen = _output_format(output_format, format_option)
    settings = _state(ctx).shown_settings()
    output = render.config_output(describe(settings), settings.config_path, settings.config_file is not None)
    render.emit(output, chosen, sys.stdout)


@command
@source_options("source", "api_url", "exchange", "pairs")
def pairs(
    ctx: typer.Context,
    source_flags: dict[str, str | None],
    output_format: FormatArg = None,
    format_option: FormatOpt = None,
) -> None:
    """List the pairs the source offers, marking configured ones.

    Example: mcdata pairs csv
    """
    from mcdata import jobs, render

    chosen = _output_format(output_format, format_option)
    rows = jobs.list_pairs(_state(ctx).settings(**source_flags))
    render.emit(render.pairs_output(rows), chosen, sys.stdout)


@command
def prune(
    ctx: typer.Context,
    keep: Keep = None,
) -> None:
    """Delete raw prices older than --keep (whole UTC days); the rollups (hourly, two-hour, quarter-day,
    daily) and the markets list stay.

    The 7-day metrics are unchanged: they read whole hours from the rollups and only the window's edges
    from raw prices, so --keep must be at least 8d; `compute --as-of` refuses times whose windows need
    deleted prices. A prune with nothing to delete leaves the pruned mark; nothing older than the mark is
    fetched again. `run` prunes too when MCDATA_RETENTION is set.

    Example: mcdata prune --keep 90d
    """
    from mcdata import jobs

    settings = _state(ctx).settings(retention=keep)
    if not settings.retention:
        raise ConfigError("say how much to keep", "for example: mcdata prune --keep 90d")
    _exit_with(ctx, jobs.prune(settings))


@command
def check(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild every rollup that disagrees.")] = False,
) -> None:
    """Verify that the hourly, two-hour, quarter-day and daily rollups and the markets list equal the raw prices.

    Exits 1 when some rows disagree (a restore that replayed rows through the triggers, a change made
    with the triggers disabled); --repair rebuilds them from the raw rows, under the writer lock.

    Example: mcdata check --repair
    """
    from mcdata import jobs

    result = jobs.check(_state(ctx).database_settings(), repair)
    found = result.mismatches
    summary = (f"{found.hourly:,} hourly, {found.two_hourly:,} two-hour, {found.quarterly:,} quarter-day and "
               f"{plural(found.daily, 'daily rollup row')} and {plural(found.markets, 'markets row')} disagree "
               "with the raw prices")
    if not found.total:
        log.info("check: every rollup and markets row agrees with the raw prices")
    elif result.repaired:
        log.info("check: %s; rebuilt them (run %s)", summary, result.report.run_id if result.report else "?")
    else:
        log.warning("check: %s", summary)
        report_and_exit(McdataError(summary, "run `mcdata check --repair` to rebuild them"), _state(ctx).debug)


NewSeries = Annotated[bool, typer.Option("--new", help="Create the series: its pair (or venue) has no prices yet.")]


def _one_venue(settings: Settings) -> str:
    if len(settings.venues) > 1:
        raise ConfigError("prices changes one series at a time", f"name its venue: --exchange {settings.venues[0]}")
    return settings.venue


@prices_command
@source_options("exchange", exchange_help=READ_EXCHANGE_HELP["prices"])
def prices_delete(
    ctx: typer.Context,
    source_flags: dict[str, str | None],
    pair: PairArg,
    since: Annotated[str | None, typer.Option("--since", metavar="TIME", help="First time deleted (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option("--until", metavar="TIME", help="Last time deleted (ISO 8601).")] = None,
) -> None:
    """Delete a pair's stored prices (all, or from --since to --until, both included).

    A pair whose prices are all deleted is new again: the next fetch backfills it. Deleting nothing is a
    usage error (exit 2).

    Example: mcdata prices delete btceur --since 2026-11-24T10:00 --until 2026-11-24T10:00
    """
    from mcdata import jobs
    from mcdata.values import canonical_pair, parse_timestamp

    settings = _state(ctx).database_settings(**source_flags)
    _exit_with(ctx, jobs.delete_prices(settings, _one_venue(settings), canonical_pair(pair),
                                   parse_timestamp(since, "--since") if since else None,
                                   parse_timestamp(until, "--until") if until else None))


@prices_command
@source_options("exchange", exchange_help=READ_EXCHANGE_HELP["prices"])
def prices_set(
    ctx: typer.Context,
    source_flags: dict[str, str | None],
    pair: PairArg,
    at: Annotated[str, typer.Option("--at", metavar="TIME", help="The sample's time (ISO 8601).")],
    price: Annotated[float, typer.Option("--price", metavar="PRICE", help="The correct price.")],
    new: NewSeries = False,
) -> None:
    """Set the price of a pair at one time, replacing the stored one if there is one.

    The series must exist (a typo would make a new market that shifts every rank): --new creates one.

    Example: mcdata prices set btceur --at 2026-11-24T10:00 --price 81234.5
    """
    from mcdata import jobs
    from mcdata.values import canonical_pair, parse_timestamp

    settings = _state(ctx).database_settings(**source_flags)
    _exit_with(ctx, jobs.set_price(settings, _one_venue(settings), canonical_pair(pair),
                               parse_timestamp(at, "--at"), price, new=new))


import_app = typer.Typer(
    help="Import history from a venue's own archives into the candles and the raw prices.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(import_app, name="import")


@functools.partial(command, on=import_app, name="kraken-ohlcvt")
def import_kraken_ohlcvt(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(
        metavar="PATH...", show_default=False,
        help="Kraken's OHLCVT files (XBTEUR_60.csv), folders or .zip files of them.")],
) -> None:
    """Import Kraken's downloadable OHLCVT archives: years of candles, every interval.

    Every candle goes to the candles table whole; the hourly files' closes also to the raw prices at the
    close time, like a backfill. What is stored already wins (importing twice changes nothing); a stored
    value the archive disagrees with is kept and counted (exit 3). Pair names are mapped as the live
    catalog maps them (XBT is btc, XDG doge); the rollups are checked at the end.

    Example: mcdata import kraken-ohlcvt ~/Downloads/Kraken_OHLCVT.zip
    """
    from mcdata.jobs.history_import import import_kraken_ohlcvt as importing

    state = _state(ctx)
    _exit_with(ctx, importing(state.settings(source="kraken"), paths, _progress(state)))


@command
@source_options("source", "api_url", "exchange", exchange_help="The venue whose coverage is shown (and repaired). "
                "Default: every venue (repair: the configured one).")
def coverage(
    ctx: typer.Context,
    source_flags: dict[str, str | None],
    pair: Annotated[str | None, typer.Argument(
        metavar="PAIR", show_default=False, autocompletion=complete_pairs,
        help="A pair such as btceur; every pair when omitted.")] = None,
    output_format: FormatArg = None,
    format_option: FormatOpt = None,
    repair: Annotated[bool, typer.Option(
        "--repair", help="First fetch what the venue can still serve of the holes not collected: its candles "
                         "within their reach, Kraken's Trades (1 request a second) beyond.")] = False,
    max_time: Annotated[str, typer.Option(
        "--max-time", metavar="DURATION",
        help="How long --repair may walk trades; a walk cut short resumes where it stopped.")] = "45m",
) -> None:
    """Show each market's hourly history: first and last sample, count, and every hole.

    A hole is an hour without a sample. It is "no trades" where the venue itself said so (an archive
    without that candle, an answer that covered the hour) and "not collected" otherwise. FORMAT is
    table (default), json or csv (one row per hole).

    Example: mcdata coverage btceur --repair
    """
    from mcdata import coverage as holes
    from mcdata import render, render_coverage
    from mcdata.reading import reading
    from mcdata.values import canonical_pair, parse_duration

    formats = FORMAT_NAMES
    if pair and pair.lower() in formats and (output_format is None or output_format.lower() not in formats):
        pair, output_format = output_format, pair  # `mcdata coverage json`
    chosen = _output_format(output_format, format_option)
    wanted = canonical_pair(pair) if pair else None
    state = _state(ctx)
    if repair:
        from mcdata.jobs.repair import repair as repairing  # the sources and HTTP: only when repairing

        try:
            budget = parse_duration(max_time)
        except ValueError as exc:
            raise ConfigError(f"--max-time: {exc}", "for example: --max-time 45m") from None
        settings = state.settings(**source_flags)
        if len(settings.venues) > 1:
            raise ConfigError("--repair fetches from one venue at a time", f"name it: --exchange {settings.venues[0]}")
        report = repairing(settings, wanted, _progress(state), budget)
        _say_report(ctx, report)
        venue: str | None = settings.venue
    else:
        settings = state.database_settings(**source_flags)
        venue = source_flags.get("exchange")
        report = None
    with reading(settings) as (_, connection):
        found = holes.report(connection, venue, wanted)
    if not found:
        raise McdataError(f"no stored prices of {wanted or 'any pair'}" + (f" on {venue}" if venue else ""),
                          "`mcdata show` lists what is stored")
    render.emit(render_coverage.coverage_output(found), chosen, sys.stdout)
    if report is not None and report.exit_code:
        raise typer.Exit(int(report.exit_code))


@command
def export(
    ctx: typer.Context,
    pairs: Annotated[str, typer.Argument(
        metavar="PAIRS", show_default=False, autocompletion=complete_pairs,
        help="Pairs, comma-separated (btceur,etheur or BTC/EUR,ETH/EUR), or all.")],
    export_format: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="FORMAT", show_default=False,
        help="csv, parquet or feather (parquet and feather need the [export] extra). "
             "Default: csv; feather with --layout freqtrade.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="PATH", show_default=False,
        help="The file to write (csv: stdout when omitted; else mcdata-<interval>.<format>); with --layout "
             "freqtrade the data folder (default: user_data/data).")] = None,
    layout: Annotated[str, typer.Option(
        "--layout", metavar="LAYOUT",
        help="plain (one file, every market) or freqtrade (<folder>/<exchange>/<BASE>_<QUOTE>-1h.feather "
             "with date, open, high, low, close, volume).")] = "plain",
    interval: Annotated[str, typer.Option(
        "--interval", metavar="INTERVAL", help="The candles' interval: 1m 5m 15m 30m 1h 4h 12h 1d 1w.")] = "1h",
    since: Annotated[str | None, typer.Option(
        "--since", metavar="TIME", show_default=False,
        help="First candle's open time, ISO 8601 (UTC when no offset is given). Default: the oldest.")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", metavar="TIME", show_default=False,
        help="End (exclusive) of the candles' open times. Default: no end.")] = None,
    exchange: Annotated[str | None, exchange_option("Export only this venue's markets. Default: every venue.",
                                                    from_env=False)] = None,
) -> None:
    """Export stored candles (or closes, where a market has only closes) for backtesting.

    Rows stream in chunks, so a year of thousands of markets fits in little memory; a file is renamed
    into place only when whole. With --layout freqtrade, `freqtrade backtesting --datadir <folder>/<exchange>`
    reads the files (markets with closes only are skipped: freqtrade needs candles).

    Example: mcdata export btceur,etheur --layout freqtrade -o user_data/data
    """
    from mcdata import export as exporting
    from mcdata.values import ALL_PAIRS, canonical_pair, check_venue, parse_timestamp

    written = [item.strip() for item in pairs.split(",") if item.strip()]
    chosen = ALL_PAIRS if [w.lower() for w in written] == ["all"] else tuple(
        dict.fromkeys(canonical_pair(item) for item in written))
    if not chosen:
        raise ConfigError("no pair given", "name pairs such as btceur,etheur, or all")
    request = exporting.ExportRequest(
        pairs=chosen, output_format=(export_format or ("feather" if layout == "freqtrade" else "csv")).lower(),
        layout=layout.lower(), interval=interval, exchange=check_venue(exchange) if exchange else None,
        since=parse_timestamp(since, "--since") if since else None,
        until=parse_timestamp(until, "--until") if until else None, output=output,
        names={canonical_pair(item): item for item in written if chosen != ALL_PAIRS and re.search(r"[-/_]", item)})
    summary = exporting.export(_state(ctx).database_settings(), request, _progress(_state(ctx)))
    for line in exporting.summary_lines(summary, request):
        log.info("%s", line)
    if summary.skipped:
        log.warning("warning: %s had closes only, no %s candles: freqtrade needs candles, so %s skipped",
                    ", ".join(summary.skipped[:10]) + (" ..." if len(summary.skipped) > 10 else ""),
                    request.interval, "it was" if len(summary.skipped) == 1 else "they were")


def _output_format(positional: str | None, option: str | None) -> str:
    if positional and option and positional != option:
        raise ConfigError(f"two formats given: {positional!r} and {option!r}")
    chosen = (positional or option or FORMAT_NAMES[0]).lower()
    if chosen not in FORMAT_NAMES:
        raise ConfigError(f"unknown format {printable(chosen[:40])!r}",
                          did_you_mean(chosen, FORMAT_NAMES) or f"use one of {', '.join(FORMAT_NAMES)}")
    return chosen


def _source_job(ctx: typer.Context, source_flags: dict[str, str | None],
                uses_alerts: bool = False) -> tuple[Settings, Progress]:
    """The settings of a job that fetches (`run` uses the alert rules too), and its progress display (a
    bar on a terminal, unless --quiet)."""
    state = _state(ctx)
    settings = state.alert_settings(fetching=True, **source_flags) if uses_alerts else state.settings(**source_flags)
    return settings, _progress(state)


def _progress(state: CliState) -> Progress:
    """How a long job shows itself: a bar on a terminal, unless --quiet."""
    from mcdata.render import progress_bar

    return functools.partial(progress_bar, enabled=sys.stderr.isatty() and not state.quiet)


def _exit_with(ctx: typer.Context, report: Report) -> None:
    """Say what a step did and exit with its code."""
    _say_report(ctx, report)
    if report.exit_code:
        raise typer.Exit(int(report.exit_code))


def _say_report(ctx: typer.Context, report: Report) -> None:
    """Say what a step did: problems as warnings, the summary as info."""
    from mcdata.render import report_summary

    if _state(ctx).debug:  # errors caught into the report (a source down) have tracebacks too
        for error in report.exceptions:
            write_traceback(error)
    for problem in report.failures.values():
        log.warning("warning: %s", problem)
    label = "warning" if report.exit_code in (ExitCode.OK, ExitCode.PARTIAL) else "error"
    for problem in report.errors:
        log.warning("%s: %s", label, problem)
    log.info("%s", report_summary(report))


def _terminate(signal_number: int, _frame: object) -> None:
    raise Terminated(signal_number)


GLOBAL_FLAGS = frozenset({"--verbose", "-v", "--quiet", "-q", "--debug"})
GLOBAL_OPTIONS = frozenset({"--database-url", "--config"})  # with a value


def hoist_global_options(args: list[str]) -> list[str]:
    """`mcdata run --quiet` as `mcdata --quiet run`: global options are accepted after the command too."""
    command = next((i for i, arg in enumerate(args) if not arg.startswith("-")
                    and (i == 0 or args[i - 1] not in GLOBAL_OPTIONS)), None)
    if command is None:
        return args
    hoisted, rest, index = [], [], command + 1
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        if arg in GLOBAL_FLAGS or arg.split("=", 1)[0] in GLOBAL_OPTIONS:
            hoisted.append(arg)
            if arg in GLOBAL_OPTIONS and index + 1 < len(args):
                hoisted.append(args[index + 1])
                index += 1
        else:
            rest.append(arg)
        index += 1
    return [*args[:command], *hoisted, *args[command:command + 1], *rest]


def _epilog() -> str:
    from mcdata.config import default_config_file

    codes = ", ".join(f"{int(code)} {code.name.lower()}" for code in ExitCode)
    env_only = ", ".join(s.envvar for name, s in SETTINGS.items() if name not in FLAGGED_SETTINGS)
    return (f"Exit codes: {codes} (143 for SIGTERM). Config file: {default_config_file()} (or --config / "
            f"MCDATA_CONFIG). Settings only by env var or config file: {env_only}.")


app.info.epilog = _epilog()  # after every command has declared its flags


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)  # `docker stop`, timeout, systemd: end like Ctrl-C, recorded
    from mcdata.render import ascii_fallback

    for stream in (sys.stdout, sys.stderr):  # a latin-1 or ASCII terminal gets ASCII, never a crash
        ascii_fallback(stream)
    try:
        app(args=hoist_global_options(sys.argv[1:]), prog_name="mcdata")
    except SystemExit as done:
        if done.code in (int(ExitCode.INTERRUPTED), 128 + signal.SIGTERM):
            # recorded and rolled back already: do not wait for backfill threads still inside a request
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(done.code))
        raise
