"""Settings: flag > env var > config file > default, *_FILE secrets, validation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mcdata.config import ORIGINAL_PAIRS, load_settings
from mcdata.errors import ConfigError, ExitCode, redact
from mcdata.values import parse_duration


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_defaults_use_the_user_data_dir(isolated_environment: Path) -> None:
    settings = load_settings()
    assert settings.database_url == f"sqlite:///{isolated_environment / 'data' / 'mcdata' / 'mcdata.db'}"
    assert settings.source == "kraken"
    assert settings.pairs == ORIGINAL_PAIRS
    assert settings.backfill == timedelta(days=7)
    assert settings.config_file is None


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'pairs = ["btceur", "etheur"]\nbackfill = "2d"\nsource = "cryptowatch"\n')
    env = {"MCDATA_BACKFILL": "12h", "MCDATA_SOURCE": "kraken"}
    settings = load_settings({"source": "cryptowatch"}, env=env, config_file=config)
    assert settings.source == "cryptowatch"  # flag beats env
    assert settings.backfill == timedelta(hours=12)  # env beats file
    assert settings.pairs == ("btceur", "etheur")  # file beats default
    assert settings.http_timeout == 10.0  # default
    assert settings.config_file == Path(config)


def test_config_file_from_env_and_default_location(isolated_environment: Path) -> None:
    default = isolated_environment / "config" / "mcdata" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text('pairs = "btcusd,ethusd"\n')
    assert load_settings(env={}).pairs == ("btcusd", "ethusd")
    other = write_config(isolated_environment, "backfill = '1d'\n")
    settings = load_settings(env={"MCDATA_CONFIG": other})
    assert settings.backfill == timedelta(days=1)
    assert settings.pairs == ORIGINAL_PAIRS


def test_database_url_file(tmp_path: Path) -> None:
    secret = tmp_path / "db_url"
    secret.write_text("postgresql://app:hunter22@db/prices\n")
    settings = load_settings(env={"MCDATA_DATABASE_URL_FILE": str(secret)})
    assert settings.database_url == "postgresql://app:hunter22@db/prices"
    assert "hunter22" not in redact("failed with postgresql://app:hunter22@db/prices")
    # both the plain variable and the file: a mistake, refused (the postgres image's rule)
    with pytest.raises(ConfigError, match="both MCDATA_DATABASE_URL and MCDATA_DATABASE_URL_FILE"):
        load_settings(env={"MCDATA_DATABASE_URL_FILE": str(secret), "MCDATA_DATABASE_URL": "sqlite:///x.db"})


def test_missing_secret_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(env={"MCDATA_DATABASE_URL_FILE": str(tmp_path / "nope")})
    assert error.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MCDATA_BACKFILL": "7x"}, "MCDATA_BACKFILL"),
        ({"MCDATA_SOURCE": "binance"}, "expected one of kraken, cryptowatch"),
        ({"MCDATA_PAIRS": "btceur'; drop table runs; --"}, "invalid pair name"),
        ({"MCDATA_PAIRS": "BTC EUR"}, "invalid pair name"),
        ({"MCDATA_API_URL": "ftp://example"}, "http"),
        ({"MCDATA_HTTP_TIMEOUT": "-1"}, "MCDATA_HTTP_TIMEOUT"),
        ({"MCDATA_EXCHANGE": "bitstamp"}, "kraken source serves only"),
    ],
)
def test_invalid_values_are_usage_errors(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(env=env)
    assert needle in str(error.value)
    assert error.value.exit_code == ExitCode.USAGE


def test_malformed_and_unknown_config_file_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(env={}, config_file=write_config(tmp_path, "pairs = [unclosed"))
    with pytest.raises(ConfigError, match="unknown setting 'pair'"):
        load_settings(env={}, config_file=write_config(tmp_path, "pair = 'btceur'"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={}, config_file=str(tmp_path / "missing.toml"))


def test_pairs_all_and_normalisation() -> None:
    assert load_settings(env={"MCDATA_PAIRS": "all"}).pairs == ("all",)
    assert load_settings(env={"MCDATA_PAIRS": " BTCEUR, etheur,btceur "}).pairs == ("btceur", "etheur")


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    ("0", timedelta(0)), ("45s", timedelta(seconds=45)),
])
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_pairs_are_written_as_users_write_them() -> None:
    assert load_settings(env={"MCDATA_PAIRS": "BTC/EUR, eth-usd,doge_usd,btceur"}).pairs == ("btceur", "ethusd",
                                                                                           "dogeusd")
