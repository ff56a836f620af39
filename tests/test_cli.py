"""The command line as a user runs it: help, version, exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mcdata import __version__
from mcdata.cli import app
from mcdata.migrations import head_revision
from tests.conftest import unstamped

ROOT = Path(__file__).resolve().parent.parent


def _commands(group: typer.core.TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command the app has, sub-apps' commands as paths (`prices set`), read off the app itself."""
    found: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        if command.hidden:  # `alerts states`: what `mcdata alerts [FORMAT]` runs, its help is the group's
            continue
        if isinstance(command, typer.core.TyperGroup):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))  # type: ignore[arg-type]


def test_the_product_commands_are_there() -> None:
    assert {("fetch",), ("compute",), ("show",), ("migrate",), ("run",)} <= set(COMMANDS)


def test_help_lists_every_command_with_one_line(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in {path[0] for path in COMMANDS}:
        line = next(line for line in result.stdout.splitlines() if line.strip().startswith(name + " "))
        assert len(line.split(maxsplit=1)[1]) > 10
    assert "MCDATA_DATABASE_URL" in result.stdout


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(runner: CliRunner, path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0
    example = next(line for line in result.stdout.splitlines() if "Example: mcdata " in line)
    assert f" {' '.join(path)}" in example


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"mcdata {__version__}"


@pytest.mark.slow
def test_python_dash_m_works_from_any_directory(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mcdata", "--version"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


def test_migrate_prints_the_revision_and_is_idempotent(runner: CliRunner, db_url: str, tmp_path: Path) -> None:
    first = runner.invoke(app, ["--database-url", db_url, "migrate"])
    assert first.exit_code == 0, first.stderr
    assert first.stdout.strip() == head_revision()
    assert f"migrated from empty to revision {head_revision()}" in first.stderr
    second = runner.invoke(app, ["--database-url", db_url, "migrate"])
    assert second.exit_code == 0
    assert "nothing to do" in second.stderr


@pytest.mark.slow
def test_migrate_from_another_directory_as_a_subprocess(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub.db'}"
    result = subprocess.run([sys.executable, "-m", "mcdata", "--database-url", url, "migrate"], cwd="/",
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == head_revision()


def test_unreachable_database_exits_4_quickly_without_the_password(runner: CliRunner) -> None:
    started = time.monotonic()
    result = runner.invoke(app, ["--database-url", "postgresql://mc:TopSecret99@127.0.0.1:9/db", "migrate"])
    assert result.exit_code == 4
    assert time.monotonic() - started < 10
    assert "TopSecret99" not in result.output
    assert "cannot connect to the database" in result.stderr
    warning, error = result.stderr.strip().splitlines()  # the password on the command line is said first
    assert "--database-url carries a credential" in warning and "cannot connect" in error


def test_unreachable_database_with_debug_hides_the_password(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--debug", "--database-url", "postgres://mc:TopSecret99@127.0.0.1:9/db", "migrate"])
    assert result.exit_code == 4
    assert "Traceback" in result.stderr
    assert "TopSecret99" not in result.output


@pytest.mark.parametrize("url", ["nonsense", "mysql://root:TopSecret99@localhost/x"])
def test_bad_database_url_exits_4(runner: CliRunner, url: str) -> None:
    result = runner.invoke(app, ["--database-url", url, "migrate"])
    assert result.exit_code == 4
    assert unstamped(result.stderr)[-1].startswith("mcdata: error: ")
    assert "TopSecret99" not in result.output


def test_bad_setting_exits_2_with_one_line(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fetch", "--backfill", "seven days"])
    assert result.exit_code == 2
    assert "--backfill: invalid value 'seven days'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    from_env = runner.invoke(app, ["fetch"], env={"MCDATA_BACKFILL": "seven days"})
    assert from_env.exit_code == 2
    assert "MCDATA_BACKFILL: invalid value 'seven days'" in from_env.stderr  # the line names where it came from


@pytest.mark.slow
def test_global_options_work_after_the_command_too(tmp_path: Path) -> None:
    database = tmp_path / "x.db"
    quiet = subprocess.run([sys.executable, "-m", "mcdata", "migrate", "--quiet", "--database-url",
                            f"sqlite:///{database}"], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and database.exists()
    loud = subprocess.run([sys.executable, "-m", "mcdata", "migrate", f"--database-url=sqlite:///{database}"],
                          capture_output=True, text=True, timeout=60)
    assert loud.returncode == 0 and "already at revision" in loud.stderr


def test_log_lines_carry_the_utc_time_when_stderr_is_not_a_terminal(runner: CliRunner, tmp_path: Path) -> None:
    import re
    from datetime import UTC, datetime

    result = runner.invoke(app, ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "migrate"])
    lines = result.stderr.splitlines()
    assert lines
    for line in lines:
        stamp = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) mcdata: ", line)
        assert stamp, line
        assert abs((datetime.now(UTC) - datetime.fromisoformat(stamp.group(1))).total_seconds()) < 60


def test_show_never_creates_a_database_and_names_the_path(runner: CliRunner, tmp_path: Path) -> None:
    database = tmp_path / "nothing" / "here.db"
    result = runner.invoke(app, ["--database-url", f"sqlite:///{database}", "show"])
    assert result.exit_code == 4
    assert f"there is no database at {database}" in result.stderr  # a SQLite path is no secret: never ***
    assert not database.exists() and not database.parent.exists()


def test_no_metrics_names_the_database(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert runner.invoke(app, ["--database-url", url, "migrate"]).exit_code == 0
    for arguments in (["show"], ["show", "btceur"]):
        result = runner.invoke(app, ["--database-url", url, *arguments])
        assert result.exit_code == 1
        assert f"there are no metrics yet in {url}" in result.stderr


def test_an_impossible_database_path_is_exit_4_naming_it(runner: CliRunner, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["--database-url", f"sqlite:///{blocker}/x.db", "migrate"])
    assert result.exit_code == 4
    assert f"cannot create the database {blocker}/x.db" in result.stderr


def test_a_tilde_in_a_sqlite_path_is_the_home_folder(runner: CliRunner, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert runner.invoke(app, ["--database-url", "sqlite:///~/data/x.db", "migrate"]).exit_code == 0
    assert (tmp_path / "data" / "x.db").exists()


def test_an_unknown_revision_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "migrate", "--revision", "bogus"])
    assert result.exit_code == 2
    assert "--revision 'bogus': Can't locate revision" in result.stderr and "unexpected" not in result.stderr


def test_help_ends_with_exit_codes_config_file_and_env_only_settings(runner: CliRunner) -> None:
    from mcdata.config import SETTINGS, default_config_file
    from mcdata.errors import ExitCode

    text = " ".join(runner.invoke(app, ["--help"]).stdout.split())
    assert all(f"{int(code)} {code.name.lower()}" in text for code in ExitCode)
    assert f"Config file: {default_config_file().name}" in text or "/mcdata/config.toml (or --config" in text
    for name in ("http_timeout", "rate_limit", "api_key", "cache_dir"):
        assert SETTINGS[name].envvar in text
    assert "MCDATA_PAIRS" not in text.split("Settings only by env var")[1]  # --pairs is a flag


def test_short_version_flag_and_shell_completion(runner: CliRunner) -> None:
    assert runner.invoke(app, ["-V"]).stdout.strip() == f"mcdata {__version__}"
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout


def test_metavars_say_what_to_write(runner: CliRunner) -> None:
    text = runner.invoke(app, ["fetch", "--help"]).stdout
    for metavar in ("PAIRS", "DURATION", "URL", "VENUE"):
        assert metavar in text
    assert "<str>" not in text and "TEXT" not in text
    assert "TIME" in runner.invoke(app, ["compute", "--help"]).stdout


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_is_in_the_readmes_table(path: tuple[str, ...]) -> None:
    table = (ROOT / "README.md").read_text().split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    assert f"`mcdata {' '.join(path)}" in table, f"mcdata {' '.join(path)} is missing from the README's commands"
