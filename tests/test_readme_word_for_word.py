"""The README's quick start, offline block and one-container Docker recipe, run word for word as a newcomer
would: in a copy of the repository, in a fresh virtualenv, with a HOME of its own.

Two things differ from a newcomer's machine, both outside the words: no test may reach the internet, so
MCDATA_API_URL points the quick start at the fake exchange (and pacing is off); and there is no Docker
engine here, so the image's commands run as the Dockerfile says they run in the container (its ENV, its
config file with /data mapped to the volume, its crontab's command in place of supercronic).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mcdata.schema import raw_prices
from tests.fake_exchange import FakeExchange
from tests.test_deploy import dockerfile_env

pytestmark = pytest.mark.xdist_group("readme")  # one worker: its tests share one fresh virtualenv

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
RAW = raw_prices.name
OFFLINE_PORT = 8765  # the port the README names
COPY_IGNORES = shutil.ignore_patterns(".git", ".venv", "venv", "*.db", "*.db-*", "*.db.lock", "__pycache__",
                                      ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "build", "dist")


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", text, re.DOTALL)


def rows(db_file: Path, statement: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(f"sqlite:///{db_file}")
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(statement))]
    finally:
        engine.dispose()


def newcomer_env(home: Path, **extra: str) -> dict[str, str]:
    """The machine's environment less anything of mcdata's or the tests', with a HOME of its own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MCDATA_", "XDG_", "PYTEST_", "VIRTUAL_ENV", "COLUMNS"))}
    return {**env, "HOME": str(home), "MCDATA_RATE_LIMIT": "1000", **extra}


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], str]]:
    """The quick start's first command, word for word, in a copy of the repository: (the copy, the
    environment it ran with, its output)."""
    clone = tmp_path_factory.mktemp("newcomer") / "mcdata"
    shutil.copytree(ROOT, clone, ignore=COPY_IGNORES)
    home = clone.parent / "home"
    home.mkdir()
    [main_job, _] = shell_blocks(section("Quick start"))
    with FakeExchange() as exchange:
        env = newcomer_env(home, MCDATA_API_URL=exchange.url)
        done = subprocess.run(["sh", "-c", main_job], cwd=clone, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        yield clone, env, done.stdout


def test_the_quick_start_installs_runs_and_shows(quick_start: tuple[Path, dict[str, str], str]) -> None:
    _, env, shown = quick_start
    database = Path(env["HOME"]) / ".local" / "share" / "mcdata" / "mcdata.db"  # where the README says
    assert database.exists()
    assert "btceur" in shown and "ranked" in shown
    [(pairs, status)] = rows(database, "SELECT COUNT(DISTINCT pair), MIN(status) FROM markets, runs")
    assert pairs >= 9 and status == "ok"
    # "backfills 7 days of hourly prices of the default pairs"
    [(oldest,)] = rows(database, f"SELECT MIN(timestamp) FROM {RAW} WHERE pair = 'btceur'")
    age = datetime.now(UTC) - datetime.fromisoformat(str(oldest)).replace(tzinfo=UTC)
    assert timedelta(days=6, hours=22) <= age <= timedelta(days=7, hours=1), age


def _offline_commands() -> tuple[str, str]:
    offline = README.split("**Offline**", 1)[1].split("\n\n", 1)[0]
    commands = re.findall(r"`([^`]+)`", offline)
    server = next(c for c in commands if "tests.fake_exchange" in c and c.startswith(".venv/"))
    run = next(c for c in commands if c.endswith("mcdata run"))
    return server, run


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_offline_block_runs_word_for_word_into_a_database_of_its_own(
        quick_start: tuple[Path, dict[str, str], str]) -> None:
    clone, env, _ = quick_start
    server_command, run_command = _offline_commands()
    assert f"http://127.0.0.1:{OFFLINE_PORT}" in run_command
    assert not _port_open(OFFLINE_PORT), f"port {OFFLINE_PORT} is taken: the README's demo needs it"
    offline_env = {k: v for k, v in env.items() if k != "MCDATA_API_URL"}
    server = subprocess.Popen(["sh", "-c", server_command], cwd=clone, env=offline_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _port_open(OFFLINE_PORT):
            assert server.poll() is None and time.monotonic() < deadline, "the fake exchange did not start"
            time.sleep(0.1)
        real = Path(env["HOME"]) / ".local" / "share" / "mcdata" / "mcdata.db"
        before = rows(real, f"SELECT COUNT(*) FROM {RAW}")
        done = subprocess.run(["sh", "-c", run_command], cwd=clone, env=offline_env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=10)
    demo = clone / "demo.db"
    [(stored,)] = rows(demo, f"SELECT COUNT(*) FROM {RAW} WHERE exchange = 'kraken'")
    assert stored > 0
    assert rows(real, f"SELECT COUNT(*) FROM {RAW}") == before  # the demo never touches the real database


def test_the_one_container_recipe_runs_as_the_image_would(quick_start: tuple[Path, dict[str, str], str],
                                                          tmp_path: Path) -> None:
    clone, env, _ = quick_start
    container = section("Run it every hour").split("**Container.**", 1)[1]
    [recipe] = shell_blocks(container)[:1]
    build, cron, one_off = (shlex.split(line) for line in recipe.splitlines())
    assert build[:2] == ["docker", "build"] and build[-1] == "."
    image = build[build.index("-t") + 1]
    dockerfile = (clone / "Dockerfile").read_text()
    image_env = dockerfile_env(dockerfile)
    config = re.search(r"printf '([^']+)' > (/\S+)", dockerfile)
    crontab = re.search(r"echo '([^']+)' > (/\S+)", dockerfile)
    assert config is not None and crontab is not None and image_env["MCDATA_CONFIG"] == config[2]
    volume = tmp_path / "volume"  # the named volume mounted at /data
    volume.mkdir(mode=0o700)
    config_file = tmp_path / "config.toml"
    config_file.write_text(config[1].replace("\\n", "\n").replace("/data/", f"{volume}/"))
    config_file.chmod(0o644)
    venv_bin = str(clone / ".venv" / "bin")
    inside = {**env, **image_env, "MCDATA_CONFIG": str(config_file), "PATH": f"{venv_bin}:{env['PATH']}"}

    def docker_run(words: list[str]) -> subprocess.CompletedProcess[str]:
        """`docker run [options] IMAGE [args]` as the image runs it: the entrypoint (mcdata unless
        --entrypoint) with the args; supercronic's crontab command once in place of supercronic."""
        assert words[:2] == ["docker", "run"]
        options, rest = words[2:], []
        entrypoint = ["mcdata"]
        while options:
            word = options.pop(0)
            if word in ("-d", "--rm"):
                continue
            if word in ("--name", "-v"):
                value = options.pop(0)
                if word == "-v":
                    assert value.split(":") == [value.split(":")[0], "/data"], value
                continue
            if word == "--entrypoint":
                entrypoint = [options.pop(0)]
                continue
            assert word == image, f"unexpected docker option {word!r}"
            rest = options
            break
        command = [*entrypoint, *rest]
        if command[:2] == ["sh", "-c"]:
            schedule = f"exec supercronic {crontab[2]}"
            assert schedule in command[2]
            command[2] = command[2].replace(schedule, crontab[1].split(maxsplit=5)[5])
        return subprocess.run(command, env=inside, capture_output=True, text=True, timeout=300, check=False)

    started = docker_run(cron)
    assert started.returncode == 0, started.stderr[-2000:]
    assert started.stdout == ""  # --quiet: nothing when all is well
    shown = docker_run(one_off)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "btceur" in shown.stdout and (volume / "mcdata.db").exists()
    [(runs,)] = rows(volume / "mcdata.db", "SELECT COUNT(*) FROM runs WHERE command = 'run' AND status = 'ok'")
    assert runs == 2  # the first run at start, then the crontab's


def test_the_history_flow_runs_word_for_word(quick_start: tuple[Path, dict[str, str], str]) -> None:
    """README, History: from an archive to a freqtrade layout, each `mcdata` line as written (in the quick
    start's virtualenv, after the `export` extra as the README installs it), against the fake Kraken: an
    archive that ends 40 days ago, the API's 720 hours, the hole between them bridged from Trades."""
    from tests.test_history_import import ohlcvt

    clone, env, _ = quick_start
    history = section("History")
    install = re.search(r"`(pip install '\.\[export\]')` in the clone", history)
    assert install is not None
    venv_bin = clone / ".venv" / "bin"
    subprocess.run(["sh", "-c", f"{venv_bin}/{install[1]}"], cwd=clone, env=env, check=True, capture_output=True,
                   timeout=600)
    [flow] = [block for block in shell_blocks(history) if "--layout freqtrade" in block]
    home = Path(env["HOME"])
    (home / "Downloads").mkdir(exist_ok=True)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=100)
    (home / "Downloads" / "XBTEUR_60.csv").write_text(ohlcvt(start, 60 * 24, timedelta(hours=1), 20_000.0))
    commands = [line.split("  #", 1)[0].strip() for line in flow.splitlines() if line.startswith("mcdata ")]
    assert len(commands) == 5
    with FakeExchange() as exchange:
        flow_env = {**env, "MCDATA_API_URL": exchange.url, "PATH": f"{venv_bin}:{env['PATH']}"}
        outputs = []
        for command in commands:
            done = subprocess.run(["sh", "-c", command], cwd=home, env=flow_env, capture_output=True, text=True,
                                  timeout=300, check=False)
            assert done.returncode == 0, (command, (done.stdout + done.stderr)[-2000:])
            outputs.append(done.stdout)
    hole = re.compile(r"│ not collected +│")  # a hole's row, not the summary's column title
    assert hole.search(outputs[2]) and not hole.search(outputs[3])  # the hole, then bridged
    datadir = re.search(r"--datadir (\S+)", flow)
    assert datadir is not None
    exported = home / datadir[1] / "BTC_EUR-1h.feather"
    import pyarrow.feather as feather

    table = feather.read_table(exported)
    assert table.column_names == ["date", "open", "high", "low", "close", "volume"]
    [(candles,)] = rows(Path(env["HOME"]) / ".local" / "share" / "mcdata" / "mcdata.db",
                        "SELECT COUNT(*) FROM candles WHERE pair = 'btceur' AND interval_s = 3600")
    assert table.num_rows == candles >= 100 * 24 - 2
