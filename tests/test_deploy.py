"""The crontab, Dockerfile and docker-compose.yml invoke commands that exist, the way they exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcdata.cli import app

ROOT = Path(__file__).resolve().parent.parent


def cron_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"^[\d*/,-]+\s+[\d*/,-]+\s+[\d*/,-]+\s+[\d*/,-]+\s", line)]


def mcdata_arguments(command: str) -> list[str]:
    """The arguments given to mcdata in a shell command line (up to a redirection)."""
    words = shlex.split(command)
    start = next(i for i, word in enumerate(words) if word == "mcdata" or word.endswith("/mcdata"))
    arguments = []
    for word in words[start + 1:]:
        if word.startswith((">", "2>", "<")):
            break
        arguments.append(word)
    return arguments


def assert_valid_invocation(runner: CliRunner, arguments: list[str]) -> None:
    result = runner.invoke(app, [*arguments, "--help"])
    assert result.exit_code == 0, (arguments, result.output)


def test_crontab_example_runs_the_hourly_job(runner: CliRunner) -> None:
    text = (ROOT / "crontab.example").read_text()
    lines = cron_lines(text)
    assert len(lines) == 1
    schedule, command = lines[0].split(maxsplit=5)[:5], lines[0].split(maxsplit=5)[5]
    assert schedule[1:] == ["*", "*", "*", "*"]  # every hour
    assert "flock" not in command and "/tmp" not in command  # mcdata's own lock; none that others can hold
    assert re.match(r"/\S+/bin/mcdata\s", command)  # an absolute path into a virtualenv
    assert ">>" in command and "2>&1" in command
    arguments = mcdata_arguments(command)
    assert arguments == ["--quiet", "run"]
    assert_valid_invocation(runner, arguments)
    assert "MCDATA_DATABASE_URL" in text


def test_dockerfile_entrypoint_and_container_cron(runner: CliRunner) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mcdata"]' in text
    assert re.search(r"SUPERCRONIC_SHA1SUM=[0-9a-f]{40}", text)
    assert "sha1sum -c" in text
    assert re.search(r"^USER mcdata$", text, re.MULTILINE)
    crontab = re.search(r"echo '([^']+)' > (/\S+)", text)
    assert crontab is not None
    lines = cron_lines(crontab.group(1))
    assert len(lines) == 1
    arguments = mcdata_arguments(lines[0].split(maxsplit=5)[5])
    assert arguments == ["--quiet", "run"]
    assert_valid_invocation(runner, arguments)
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f'entrypoint: ["supercronic", "{crontab.group(2)}"]' in compose
    assert "MCDATA_DATABASE_URL_FILE: /run/secrets/mcdata_database_url" in compose


@pytest.mark.parametrize("arguments", [["show"], ["show", "btceur"], ["run"], ["migrate"]])
def test_documented_container_commands_exist(runner: CliRunner, arguments: list[str]) -> None:
    assert_valid_invocation(runner, arguments)
