"""The user's config file: validation, precedence, keys."""

from __future__ import annotations

import argparse

import pytest

from fairpp_app.cli.parser import add_config_flags, config_from_args
from fairpp_app.core.errors import ConfigError
from fairpp_app.core.simulation_config import SimulationConfig
from fairpp_app.core.user_config import load_config, secret


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("FAIRPP_CONFIG", str(path))
    return path


def _args(argv):
    parser = argparse.ArgumentParser()
    add_config_flags(parser, "simulate")
    return parser.parse_args(argv)


def test_missing_file_means_defaults(config_file):
    assert load_config() == {"simulate": {}, "keys": {}, "app": {}}
    assert config_from_args(SimulationConfig, _args([]), "simulate") == SimulationConfig()


def test_precedence_defaults_then_file_then_flags(config_file):
    config_file.write_text('[simulate]\nbackend = "ollama"\nlimit = 5\nretry_delay = 1\n')
    cfg = config_from_args(SimulationConfig, _args(["--limit", "7"]), "simulate")
    assert (cfg.backend, cfg.limit, cfg.retry_delay, cfg.mode) == ("ollama", 7, 1.0, "logprob")


@pytest.mark.parametrize("text,needle", [
    ('[simulate]\nlimit = "many"\n', "limit must be int"),
    ('[simulate]\nbogus = 1\n', "has no option 'bogus'"),
    ('[other]\n', "unknown section"),
    ('[simulate\n', "not valid TOML"),
    ('[keys]\nX = 3\n', "must be a string"),
])
def test_bad_config_names_file_and_problem(config_file, text, needle):
    config_file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(config_file) in str(info.value) and needle in str(info.value)


def test_invalid_value_is_caught_by_the_dataclass(config_file):
    config_file.write_text('[simulate]\nmode = "guess"\n')
    from fairpp_app.core.errors import UsageError

    with pytest.raises(UsageError, match="mode must be one of"):
        config_from_args(SimulationConfig, _args([]), "simulate")


def test_secret_prefers_environment_then_file(config_file, monkeypatch):
    config_file.write_text('[keys]\nMY_KEY = "from-file"\n')
    monkeypatch.delenv("MY_KEY", raising=False)
    assert secret("MY_KEY") == "from-file"
    monkeypatch.setenv("MY_KEY", "from-env")
    assert secret("MY_KEY") == "from-env"
    assert secret("OTHER_KEY") is None


def test_max_jobs_from_app_section_then_environment(config_file, monkeypatch):
    from fairpp_app.core.user_config import max_jobs

    monkeypatch.delenv("FAIRPP_MAX_JOBS", raising=False)
    assert max_jobs() == 1  # no file: one heavy job at a time
    config_file.write_text("[app]\nmax_jobs = 3\n")
    assert max_jobs() == 3 and load_config()["app"] == {"max_jobs": 3}
    monkeypatch.setenv("FAIRPP_MAX_JOBS", "2")
    assert max_jobs() == 2
    monkeypatch.setenv("FAIRPP_MAX_JOBS", "none")
    with pytest.raises(ConfigError, match="FAIRPP_MAX_JOBS must be a whole number"):
        max_jobs()


@pytest.mark.parametrize("text, needle", [
    ("[app]\nmax_jobs = 0\n", "max_jobs must be a whole number of 1 or more, got 0"),
    ("[app]\nmax_jobs = 1.5\n", "got 1.5"),
    ("[app]\nmax_jobs = true\n", "got True"),
    ("[app]\njobs = 2\n", "[app] has no option 'jobs'"),
])
def test_bad_app_section_is_refused(config_file, text, needle):
    config_file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert needle in str(info.value) and str(config_file) in str(info.value)
