"""The crontab, Dockerfile and docker-compose.yml invoke commands that exist, the way they exist."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
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
    # cron and the shell share one database: the crontab sets none, and says where to set one for both
    assert not re.search(r"^MCDATA_", text, re.MULTILINE) and "config.toml" in text


def test_dockerfile_entrypoint_and_container_cron(runner: CliRunner) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mcdata"]' in text
    for arch in ("AMD64", "ARM64"):  # supercronic per TARGETARCH, each with its pinned SHA-256
        assert re.search(rf"SUPERCRONIC_SHA256_{arch}=[0-9a-f]{{64}}\n", text)
    assert "supercronic-linux-${TARGETARCH}" in text and "sha256sum -c" in text and "sha1sum" not in text
    assert re.search(r"^USER 10001$", text, re.MULTILINE) and "--uid 10001 mcdata" in text
    crontab = re.search(r"echo '([^']+)' > (/\S+)", text)
    assert crontab is not None
    lines = cron_lines(crontab.group(1))
    assert len(lines) == 1
    arguments = mcdata_arguments(lines[0].split(maxsplit=5)[5])
    assert arguments == ["--quiet", "run"]
    assert_valid_invocation(runner, arguments)
    compose = (ROOT / "docker-compose.yml").read_text()
    # a first run at container start, then supercronic
    assert f'entrypoint: ["sh", "-c", "mcdata --quiet run; exec supercronic {crontab.group(2)}"]' in compose
    assert "MCDATA_DATABASE_URL_FILE: /run/secrets/mcdata_database_url" in compose


def dockerfile_env(text: str) -> dict[str, str]:
    """The final stage's ENV, as `docker build` sets it (ENV A=1 \\ B=2 continuation lines)."""
    final = text.rsplit("\nFROM ", 1)[1]
    joined = re.sub(r"\\\n\s*", " ", final)
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", joined, re.MULTILINE):
        env.update(word.split("=", 1) for word in shlex.split(line))
    return env


def test_compose_stores_into_postgresql(tmp_path: Path) -> None:
    """The image's ENV and config file plus the scheduler's environment and secret resolve to PostgreSQL."""
    from ruamel.yaml import YAML

    from mcdata.config import load_settings

    dockerfile = (ROOT / "Dockerfile").read_text()
    env = dockerfile_env(dockerfile)
    config_text = re.search(r"printf '([^']+)' > (/\S+)", dockerfile)
    assert config_text is not None and env["MCDATA_CONFIG"] == config_text.group(2)
    config = tmp_path / "config.toml"
    config.write_text(config_text.group(1).replace("\\n", "\n"))
    env["MCDATA_CONFIG"] = str(config)
    compose = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    secret = tmp_path / "mcdata_database_url"
    secret.write_text("postgresql://mcdata:choose-a-password@db/mcdata")
    secret.chmod(0o600)
    for service in ("scheduler", "mcdata"):
        service_env = {k: str(v) for k, v in compose["services"][service]["environment"].items()}
        assert service_env.pop("MCDATA_DATABASE_URL_FILE") == "/run/secrets/mcdata_database_url"
        settings = load_settings(env={**env, **service_env, "MCDATA_DATABASE_URL_FILE": str(secret)})
        assert settings.database_url == "postgresql://mcdata:choose-a-password@db/mcdata"
    alone = load_settings(env=env)  # `docker run IMAGE`: the SQLite file in the volume
    assert alone.database_url == "sqlite:////data/mcdata.db"


def test_a_secret_given_twice_is_a_usage_error(tmp_path: Path, runner: CliRunner) -> None:
    secret = tmp_path / "url"
    secret.write_text(f"sqlite:///{tmp_path / 'a.db'}")
    result = runner.invoke(app, ["migrate"], env={"MCDATA_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}",
                                                  "MCDATA_DATABASE_URL_FILE": str(secret)})
    assert result.exit_code == 2
    assert "both MCDATA_DATABASE_URL and MCDATA_DATABASE_URL_FILE are set" in result.stderr


def test_compose_file_follows_the_compose_spec() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                             "vendor.compose-spec", str(ROOT / "docker-compose.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "hadolint"), "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("arguments", [["show"], ["show", "btceur"], ["run"], ["migrate"]])
def test_documented_container_commands_exist(runner: CliRunner, arguments: list[str]) -> None:
    assert_valid_invocation(runner, arguments)


def test_the_container_healthcheck_is_mcdata_status(env: str, runner: CliRunner) -> None:
    """Docker's rule: exit 0 healthy, anything else unhealthy; the image's check says so for a database
    with no run yet, and no more after a good run."""
    found = re.search(r"^HEALTHCHECK (.*?) CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert found is not None
    options, command = found.group(1), json.loads(found.group(2))
    assert command[0] == "mcdata" and command[-1] == "status"
    assert "--start-period=" in options and "--interval=" in options
    assert runner.invoke(app, command[1:]).exit_code == 1  # no run yet
    assert runner.invoke(app, ["run", "--backfill", "0"]).exit_code == 0
    assert runner.invoke(app, command[1:]).exit_code == 0


# -- a reproducible image: every runtime dependency from a hashed lock ------------------------------------
LOCK = ROOT / "requirements.lock"


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as name -> (version, hashes)."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[a-z0-9])", LOCK.read_text().split("\n\n", 1)[-1].strip()):
        if block.startswith("#") or not block.strip():
            continue
        head = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", block)
        assert head is not None, block[:80]
        entries[canonicalize_name(head[1])] = (head[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


def runtime_requirements() -> set[str]:
    """Every distribution the wheel needs at run time on the image's Python (3.12, Linux x86_64): the
    project's dependencies and theirs, read from the installed distributions' metadata."""
    environment = {"python_version": "3.12", "python_full_version": "3.12.12", "sys_platform": "linux",
                   "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "os_name": "posix"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pending = [(Requirement(text), ()) for text in project["dependencies"]]
    seen: set[str] = set()
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        wanted = [{**environment, "extra": extra} for extra in (extras or ("",))]
        if requirement.marker is not None and not any(requirement.marker.evaluate(env) for env in wanted):
            continue
        if name in seen and not requirement.extras:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(name) or []:
            pending.append((Requirement(text), tuple(requirement.extras)))
    return seen


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = locked()
    assert lock and all(hashes for _, hashes in lock.values()), "every pin has a hash"
    missing = runtime_requirements() - set(lock)
    assert not missing, f"requirements.lock lacks {sorted(missing)}: regenerate it (README, Container)"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        version = lock[canonicalize_name(requirement.name)][0]
        assert requirement.specifier.contains(version, prereleases=True), (text, version)
    assert "--generate-hashes" in LOCK.read_text() and "pyproject.toml" in LOCK.read_text().split("\n\n")[0]


def test_the_image_installs_only_from_the_lock_and_pins_postgres() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.lock /tmp/requirements.lock" in text
    assert "pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock" in text
    assert "pip install --no-cache-dir --no-deps /tmp/dist/*.whl" in text  # nothing unhashed comes along
    assert "requirements.lock" not in (ROOT / ".dockerignore").read_text().split("\n", 2)[2]
    compose = (ROOT / "docker-compose.yml").read_text()
    images = re.findall(r"^\s+image: (\S+)", compose, re.MULTILINE)
    assert "mcdata:local" in images
    [postgres] = [image for image in images if image.startswith("postgres:")]
    assert re.fullmatch(r"postgres:\d+\.\d+(-[a-z]+)?", postgres), postgres  # a release, not a moving major tag
