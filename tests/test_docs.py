"""The README, the help texts and CI agree with the code."""

from __future__ import annotations

import re
from pathlib import Path

from mcdata.config import SETTINGS
from mcdata.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_quick_start_is_two_commands_and_ci_runs_the_test_command() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick_start, re.DOTALL)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    main_job, tests = commands
    assert "pip install ." in main_job and "mcdata run" in main_job
    assert "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_setting_is_documented() -> None:
    for setting in SETTINGS.values():
        assert f"`{setting.envvar}`" in README, setting.envvar
        assert f"| {setting.name} |" in README, setting.name
    assert "`MCDATA_DATABASE_URL_FILE`" in README and "`MCDATA_CONFIG`" in README


def test_exit_code_table_matches_the_enum() -> None:
    table = README.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}
