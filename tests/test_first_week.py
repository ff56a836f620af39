"""Issue 24, the first week: what a newcomer meets between the README and a deployment. Real processes,
the fake exchange on loopback, both databases."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from mcdata.cli import app
from mcdata.schema import runs
from tests.fake_exchange import FakeExchange
from tests.helpers import count_rows, query


def _mcdata(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcdata", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, check=False)


def test_output_never_crashes_on_a_terminal_that_is_not_utf8(env: str, runner: CliRunner) -> None:
    assert runner.invoke(app, ["run", "--backfill", "1d"]).exit_code == 0
    for command in (["show"], ["show", "btceur"], ["status"]):
        done = _mcdata(*command, PYTHONIOENCODING="latin-1")
        assert done.returncode == 0, done.stderr
        assert "UnicodeEncodeError" not in done.stderr
        assert "+--" in done.stdout or "|" in done.stdout  # rich's ASCII boxes


def test_quiet_status_prints_problems_only(env: str, runner: CliRunner) -> None:
    assert runner.invoke(app, ["run", "--backfill", "0"]).exit_code == 0
    healthy = runner.invoke(app, ["--quiet", "status"])
    assert healthy.exit_code == 0 and healthy.stdout == "" and healthy.stderr == ""
    sick = runner.invoke(app, ["--quiet", "status", "--max-age", "1s"], env={"MCDATA_PAIRS": "btceur,zzzeur"})
    assert sick.exit_code == 1 and sick.stdout == ""
    assert "mcdata: unhealthy: " in sick.stderr
    assert runner.invoke(app, ["--quiet", "status", "json"]).stdout.startswith("{")  # asked for: given


def test_a_mistyped_pair_is_a_usage_error_and_no_run(env: str, runner: CliRunner,
                                                     fake_exchange: FakeExchange) -> None:
    result = runner.invoke(app, ["fetch", "--pairs", "btcuer"])
    assert result.exit_code == 2
    assert "btcuer: not listed by kraken (did you mean btceur or" in result.stderr
    several = runner.invoke(app, ["fetch", "--pairs", "btcuer,btceur", "--backfill", "0"])
    assert several.exit_code == 3  # one of them exists: a partial fetch
    assert count_rows(env, runs) == 1


def test_cryptowatch_without_a_mirror_is_a_usage_error_at_once(env: str, runner: CliRunner,
                                                               fake_exchange: FakeExchange) -> None:
    result = runner.invoke(app, ["fetch", "--source", "cryptowatch"], env={"MCDATA_API_URL": ""})
    assert result.exit_code == 2
    assert "--source cryptowatch needs api_url" in result.stderr and "MCDATA_API_URL" in result.stderr
    assert fake_exchange.requests == []


def test_show_names_the_columns_it_hides_and_says_how_old_it_is(env: str, runner: CliRunner) -> None:
    assert runner.invoke(app, ["run", "--backfill", "1d"]).exit_code == 0
    narrow = runner.invoke(app, ["show"], env={"COLUMNS": "80"})  # a pipe honours COLUMNS
    assert narrow.exit_code == 0
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    footer = narrow.stdout.strip().splitlines()[-1]
    assert footer.startswith("hidden: ") and "7d min" in footer and "7d max" in footer
    assert "(just now)" in narrow.stdout or " old)" in narrow.stdout
    wide = runner.invoke(app, ["show"], env={"COLUMNS": "200"})
    assert "hidden:" not in wide.stdout and "7d min" in wide.stdout
    assert "snapshot age" in runner.invoke(app, ["show", "btceur"]).stdout


def test_a_run_that_asks_elsewhere_than_the_stored_prices_came_from_says_so(env: str, runner: CliRunner,
                                                                           fake_exchange: FakeExchange) -> None:
    with FakeExchange() as demo:  # the offline demo's fake exchange, then the real one
        assert runner.invoke(app, ["run", "--backfill", "0", "--api-url", demo.url]).exit_code == 0
    result = runner.invoke(app, ["run", "--backfill", "0"])
    assert result.exit_code == 0
    assert (f"warning: the kraken prices stored here came from {demo.url} (run #1); this run asks "
            f"{fake_exchange.url}: the two mix in one series") in result.stderr
    again = runner.invoke(app, ["run", "--backfill", "0"])
    assert "the two mix" not in again.stderr  # said once: the newest run that stored asked here
    assert [r.source_url for r in query(env, sa.select(runs).order_by(runs.c.id))] == [
        demo.url, fake_exchange.url, fake_exchange.url]


def test_a_reader_that_goes_away_is_no_failure(env: str, runner: CliRunner) -> None:
    """`mcdata show btceur | head -1`: rich and click made a closed pipe exit 1."""
    assert runner.invoke(app, ["run", "--backfill", "1d"]).exit_code == 0
    for command in (["show", "btceur"], ["status"], ["show"], ["show", "csv"]):
        process = subprocess.Popen([sys.executable, "-m", "mcdata", *command], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "60"})
        assert process.stdout is not None and process.stderr is not None
        process.stdout.readline()
        process.stdout.close()  # the reader has gone
        assert process.wait(timeout=60) == 0, (command, process.stderr.read())


def test_show_marks_pairs_no_longer_configured(env: str, runner: CliRunner) -> None:
    assert runner.invoke(app, ["run", "--backfill", "1d"]).exit_code == 0
    table = runner.invoke(app, ["show"], env={"MCDATA_PAIRS": "btceur,etheur"})
    assert table.exit_code == 0
    marked = {line.split("│")[2].strip() for line in table.stdout.splitlines() if line.count("│") > 3}
    assert "btceur" in marked and "etheur" in marked and "btcusd *" in marked
    assert "* not configured any more" in table.stdout
    document = json.loads(runner.invoke(app, ["show", "json"], env={"MCDATA_PAIRS": "btceur,etheur"}).stdout)
    assert {m["pair"] for m in document["not_configured"]} == {r["pair"] for r in document["pairs"]} - {
        "btceur", "etheur"}
    assert "not configured" not in runner.invoke(app, ["show"]).stdout  # the defaults: every stored pair


PROBE_APPRISE = """import sys
sys.argv = ["mcdata", *sys.argv[1:]]
from mcdata.cli import main
try:
    main()
except SystemExit as done:
    print("apprise" in sys.modules, done.code, file=sys.stderr)
"""


def test_notify_urls_are_checked_only_where_they_are_used(env: str, runner: CliRunner) -> None:
    """apprise costs every command 0.3 s to load: show, status and fetch never load it."""
    assert runner.invoke(app, ["run", "--backfill", "0"]).exit_code == 0
    notify = {"MCDATA_NOTIFY": "json://127.0.0.1:9/hook"}
    for command, loaded in ((["show"], False), (["status"], False), (["fetch", "--backfill", "0"], False),
                            (["alerts"], True)):
        done = subprocess.run([sys.executable, "-c", PROBE_APPRISE, *command], capture_output=True, text=True,
                              env={**os.environ, **notify}, timeout=60, check=False)
        assert done.stderr.strip().splitlines()[-1] == f"{loaded} 0", (command, done.stderr)
    bad = runner.invoke(app, ["fetch", "--backfill", "0"], env={
        "MCDATA_ALERTS": '[{"name": "x", "rule": "spike", "factor": 0.5, "window": "1h"}]'})
    assert bad.exit_code == 0 and 'warning: alert "x": factor: must be greater than 1' in bad.stderr


def test_the_fake_exchange_can_be_steered_to_watch_an_alert_fire_offline(env: str, runner: CliRunner,
                                                                        fake_exchange: FakeExchange) -> None:
    import urllib.request

    from tests.fake_exchange import KRAKEN_MARKETS

    rules = '[{"name": "btc-spike", "rule": "spike", "factor": 2, "window": "2h", "pairs": ["btceur"]}]'
    assert runner.invoke(app, ["run", "--backfill", "1d"], env={"MCDATA_ALERTS": rules}).exit_code == 0
    with urllib.request.urlopen(f"{fake_exchange.url}/_control/scale?pair=btceur&factor=3") as answer:  # noqa: S310
        assert json.loads(answer.read())["levels"]["btceur"] == 3 * 24067.9
    time.sleep(1.1)  # a sample time of its own
    fired = runner.invoke(app, ["run", "--backfill", "1d"], env={"MCDATA_ALERTS": rules})
    assert fired.exit_code == 0 and "alert: btc-spike: btceur on kraken" in fired.stderr
    assert next(m for m in KRAKEN_MARKETS if m.pair == "btceur").price == 24067.9  # no other fake is touched
    with urllib.request.urlopen(f"{fake_exchange.url}/_control/reset"):  # noqa: S310
        pass
    assert fake_exchange.markets["btceur"].price == 24067.9
    started = subprocess.Popen([sys.executable, "-m", "tests.fake_exchange", "--port", "0", "--price", "btceur=7",
                                "--scale", "nosuch=2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert started.wait(timeout=30) != 0 and "nosuch" in started.stderr.read()  # a typo is said, not served


def test_an_alert_names_its_quote_currency() -> None:
    from mcdata.alerts import quote_of

    assert [quote_of(p) for p in ("btceur", "btcusdt", "bateth", "dogeusd", "xyz", "usd")] == [
        "EUR", "USDT", "ETH", "USD", None, None]


def test_pairs_flags_accumulate_and_spaces_get_a_hint(env: str, runner: CliRunner) -> None:
    repeated = runner.invoke(app, ["fetch", "-p", "btceur", "-p", "etheur,ltceur", "--backfill", "0"])
    assert repeated.exit_code == 0 and "3 of 3 pairs stored" in repeated.stderr
    spaced = runner.invoke(app, ["fetch", "--pairs", "btceur etheur"])
    assert spaced.exit_code == 2 and "separate pairs with commas: btceur,etheur" in spaced.stderr
    shown = runner.invoke(app, ["config", "json"], env={"MCDATA_PAIRS": "btceur,etheur"})
    rows = {row["name"]: row for row in json.loads(shown.stdout)["settings"]}
    assert (rows["pairs"]["value"], rows["pairs"]["origin"]) == ("btceur,etheur", "MCDATA_PAIRS")


# -- help and wording ---------------------------------------------------------------------------
def _help(runner: CliRunner, *command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_help_names_each_value_by_what_it_is(runner: CliRunner) -> None:
    shown = _help(runner, "show")
    assert "Usage: mcdata show [OPTIONS] [PAIR] [FORMAT]" in shown
    assert "-f, --format FORMAT" in shown and "--exchange VENUE" in shown and "--history ROWS" in shown
    assert "Usage: mcdata prices set [OPTIONS] {PAIR}" in _help(runner, "prices", "set")
    assert "--price PRICE" in _help(runner, "prices", "set")
    assert "--config PATH" in _help(runner)
    for command in (["show"], ["status"], ["config"], ["pairs"], ["alerts", "history"], ["prices", "set"]):
        assert "<str>" not in "".join(line for line in _help(runner, *command).splitlines()
                                      if line.lstrip().startswith("-")), command  # every option has a metavar


def test_each_alerts_subcommand_has_its_own_help(runner: CliRunner) -> None:
    history = _help(runner, "alerts", "history")
    assert history.startswith("Usage: mcdata alerts history [OPTIONS] [FORMAT]")
    assert "--since DURATION" in history and "test notification" not in history
    test = _help(runner, "alerts", "test")
    assert test.startswith("Usage: mcdata alerts test [OPTIONS] [NAME]") and "--since" not in test
    overview = _help(runner, "alerts")
    assert "history" in overview and "test" in overview and "states" not in overview


def test_alerts_keep_their_short_forms(env: str, runner: CliRunner) -> None:
    for words, start in ((["alerts"], "0 alert rules"), (["alerts", "json"], "{"), (["alerts", "-f", "csv"], "rule,"),
                         (["alerts", "history", "csv", "--since", "1d"], "id,created_at")):
        result = runner.invoke(app, words)
        assert result.exit_code == 0 and result.stdout.lstrip().startswith(start), (words, result.output)
    typo = runner.invoke(app, ["alerts", "histroy"])
    assert typo.exit_code == 2 and "did you mean history?" in typo.stderr


def test_status_and_prices_say_what_their_exchange_chooses(runner: CliRunner) -> None:
    fetching = _help(runner, "fetch")
    assert "Venue whose markets are fetched" in fetching
    for command in (["status"], ["prices", "delete"]):
        text = _help(runner, *command)
        assert "--exchange VENUE" in text and "Venue whose markets are fetched" not in text, command


def test_mistakes_get_a_did_you_mean(env: str, runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(app, ["run", "--backfill", "0"]).exit_code == 0
    cases = [(["show", "btceur", "jsn"], "did you mean json?"),
             (["show", "--exchange", "krakn"], "did you mean --exchange kraken?"),
             (["--quiet", "status", "--exchange", "krakn"], "did you mean --exchange kraken?")]
    config = tmp_path / "typo.toml"
    config.write_text('pair = "btceur"\n')
    cases.append((["--config", str(config), "show"], "unknown setting 'pair'; did you mean pairs?"))
    for words, hint in cases:
        result = runner.invoke(app, words)
        assert result.exit_code in (1, 2) and hint in result.stderr, (words, result.stderr)


def test_completion_offers_stored_pairs_and_formats(env: str, runner: CliRunner) -> None:
    assert runner.invoke(app, ["fetch", "--pairs", "btceur,btcusd,etheur", "--backfill", "0"]).exit_code == 0

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        done = _mcdata(_MCDATA_COMPLETE="complete_bash", COMP_WORDS=line, COMP_CWORD=str(len(words) - 1))
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("mcdata show bt") == ["btceur", "btcusd"]
    assert complete("mcdata fetch --pairs btceur,et") == ["btceur,etheur"]
    assert complete("mcdata prices set e") == ["etheur"]
    assert complete("mcdata show btceur j") == ["json"]
    assert complete("mcdata status --format c") == ["csv"]


def test_config_folds_long_values_at_commas_and_slashes(runner: CliRunner) -> None:
    api_url = "http://127.0.0.1:8765/a/long/path/of/a/mirror/of/the/api/v1"
    result = runner.invoke(app, ["config"], env={"COLUMNS": "80", "MCDATA_API_URL": api_url})
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows: dict[str, list[str]] = {}
    name = ""
    for cells in (line.split("│") for line in lines if line.count("│") == 4):
        name = cells[1].strip() or name
        rows.setdefault(name, []).append(cells[2].strip())
    assert rows["pairs"][0] == "btceur,btcusd,etheur,ltceur,solusd,"  # the default pairs break after a comma
    assert "".join(rows["api_url"]) == api_url and len(rows["api_url"]) > 1
    assert all(part.endswith("/") for part in rows["api_url"][:-1])


def test_times_in_messages_end_in_z(env: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--backfill", "0"])
    assert result.exit_code == 0
    summary = result.stderr.strip().splitlines()[-1]
    assert "+00:00" not in summary and re.search(r"as of \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", summary), summary


def test_one_of_a_thing_is_singular(env: str, runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--pairs", "btceur", "--backfill", "0"])
    assert result.exit_code == 0
    assert "1 of 1 pair stored, 1 price row written" in result.stderr and "metrics of 1 pair as of" in result.stderr
