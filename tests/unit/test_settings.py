"""Settings from the config file and the environment (actionlinks.settings)."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest

from actionlinks.clock import SystemClock
from actionlinks.errors import ConfigurationError
from actionlinks.settings import Secret, Settings, default_config, parse_duration
from actionlinks.stores import store_from_url


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        (" 5M ", 300),
    ],
)
def test_durations_parse(text, seconds):
    """Plain seconds or a unit suffix."""
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["", "0", "0m", "soon", "-5", "1.5h", "5y", "9999999999", "\u0663d", "\uff11d"],
)
def test_bad_durations_are_refused(text):
    """Anything else is a configuration error, not a ValueError."""
    with pytest.raises(ConfigurationError):
        parse_duration(text)


def test_defaults_follow_the_design(tmp_path):
    """Base URL, issuer, SQLite in the home, leeway 30 s, the retry schedules."""
    settings = Settings.from_env({}, cwd=tmp_path)
    assert settings.home == tmp_path.resolve()
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.issuer == settings.base_url
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'actionlinks.db'}"
    assert settings.leeway == timedelta(seconds=30)
    assert settings.smtp_host == "localhost"
    assert settings.smtp_port == 25
    assert settings.smtp_tls == "none"
    assert [int(d.total_seconds()) for d in settings.webhook_retry_schedule] == [
        0,
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
    ]
    assert settings.keys_path == tmp_path.resolve() / "keys.json"


def test_environment_overrides_the_config_file(tmp_path):
    """ACTIONLINKS_* beats actionlinks.toml; the recorded issuer stays (issue 6)."""
    (tmp_path / "actionlinks.toml").write_text(default_config("https://file.example"))
    from_file = Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})
    assert from_file.base_url == "https://file.example"
    settings = Settings.from_env(
        {
            "ACTIONLINKS_HOME": str(tmp_path),
            "ACTIONLINKS_BASE_URL": "https://env.example",
            "ACTIONLINKS_LEEWAY": "10",
            "ACTIONLINKS_SMTP_PORT": "587",
            "ACTIONLINKS_SMTP_TLS": "starttls",
            "ACTIONLINKS_SMTP_PASSWORD": "hunter2",
            "ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "1",
            "ACTIONLINKS_MAIL_RETRY_SCHEDULE": "0,10",
            "ACTIONLINKS_REDIRECT_ORIGINS": "https://a.example, https://b.example",
        }
    )
    assert settings.base_url == "https://env.example"
    assert settings.issuer == "https://file.example"
    assert (
        Settings.from_env(
            {"ACTIONLINKS_BASE_URL": "https://x.example"}, cwd=tmp_path / "new"
        ).issuer
        == "https://x.example"
    )
    assert settings.leeway == timedelta(seconds=10)
    assert settings.smtp_port == 587
    assert settings.smtp_tls == "starttls"
    assert settings.smtp_password.reveal() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert settings.webhook_allow_private is True
    assert settings.mail_retry_schedule == (timedelta(0), timedelta(seconds=10))
    assert settings.redirect_origins == ("https://a.example", "https://b.example")


@pytest.mark.parametrize(
    "env",
    [
        {"ACTIONLINKS_BASEURL": "x"},
        {"ACTIONLINKS_BASE_URL": "ftp://x"},
        {"ACTIONLINKS_LEEWAY": "301"},
        {"ACTIONLINKS_LEEWAY": "-1"},
        {"ACTIONLINKS_SMTP_PORT": "0"},
        {"ACTIONLINKS_SMTP_TLS": "ssl"},
        {"ACTIONLINKS_DATABASE_URL": "mysql://x"},
        {"ACTIONLINKS_WEBHOOK_RETRY_SCHEDULE": "1,x"},
        {"ACTIONLINKS_WEBHOOK_RETRY_SCHEDULE": "-1"},
    ],
)
def test_invalid_settings_are_configuration_errors(tmp_path, env):
    """Every bad value names itself in a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path), **env})


def test_actions_are_declared_and_adjusted_in_the_config_file(tmp_path):
    """[actions.NAME] adds actions and adjusts built-ins, keeping their traits."""
    (tmp_path / "actionlinks.toml").write_text(
        "[actions.password-reset]\nttl = '10m'\n"
        "[actions.unsubscribe]\nttl = '400d'\nmax_ttl = '400d'\n"
        "[actions.beta-access]\nttl = '2h'\nmax_ttl = '1d'\nrevokes_previous = true\n"
        "handler_url = 'https://app.example/hooks'\nredirect = 'https://app.example/ok'\n"
    )
    actions = {
        a.name: a
        for a in Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)}).actions
    }
    assert actions["password-reset"].ttl == timedelta(minutes=10)
    assert actions["password-reset"].purpose.max_ttl == timedelta(hours=2)
    assert actions["password-reset"].revokes_previous is True
    assert actions["unsubscribe"].one_click is True
    assert actions["unsubscribe"].purpose.max_ttl == timedelta(days=400)
    beta = actions["beta-access"]
    assert (beta.ttl, beta.purpose.max_ttl) == (timedelta(hours=2), timedelta(days=1))
    assert beta.revokes_previous is True
    assert beta.handler_url == "https://app.example/hooks"
    assert beta.redirect == "https://app.example/ok"
    assert "email-confirm" in actions


@pytest.mark.parametrize(
    "toml",
    [
        "actions = 3",
        "[actions.new-one]\none_time = false\n",
        "[actions.invite]\ncolour = 'blue'\n",
        "[actions.invite]\nhandler_url = 7\n",
        "[actions.Bad_Name]\nttl = '1h'\n",
        "[actions.unsubscribe]\none_time = true\n",
        "base_url = [unterminated",
        "unknown_key = 1",
        "[actions.invite]\ndelivery = 'later'\n",
        "[actions.invite]\ndelivery = 1\n",
        # The new password would wait in the database until delivered.
        "[actions.password-reset]\ndelivery = 'queued'\n",
    ],
)
def test_invalid_config_files_are_configuration_errors(tmp_path, toml):
    """A broken or unknown config entry is refused with a clear error."""
    (tmp_path / "actionlinks.toml").write_text(toml)
    with pytest.raises(ConfigurationError):
        Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})


def test_an_action_may_ask_for_queued_delivery(tmp_path):
    """delivery = "queued" is read from the action's table; wait is the default."""
    (tmp_path / "actionlinks.toml").write_text(
        "[actions.invite]\ndelivery = 'queued'\n"
    )
    actions = {
        a.name: a
        for a in Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)}).actions
    }
    assert actions["invite"].delivery == "queued"
    assert actions["email-confirm"].delivery == "wait"


def test_secret_never_shows_itself():
    """Secret's repr and str are masked; equality compares values."""
    secret = Secret("s3cret")
    assert "s3cret" not in repr(secret)
    assert "s3cret" not in str(secret)
    assert secret == Secret("s3cret")
    assert secret != Secret("other")
    assert hash(secret) == hash(Secret("s3cret"))


def test_a_postgresql_url_makes_a_postgres_store_without_connecting(tmp_path):
    """The URL picks the PostgreSQL store; nothing is opened until connect()."""
    from actionlinks.stores.postgres import PostgresStore

    settings = Settings(home=tmp_path, database_url="postgresql://localhost/test")
    store = store_from_url(settings.database_url, clock=SystemClock())
    assert isinstance(store, PostgresStore)
    assert not store.database.is_connected


def test_postgresql_without_the_postgres_extra_names_the_extra(monkeypatch):
    """Without asyncpg installed: a configuration error saying what to install."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(ConfigurationError, match=r"actionlinks\[postgres\]"):
        store_from_url("postgresql://localhost/test", clock=SystemClock())


def test_toml_ttl_beyond_the_actions_maximum_is_refused(tmp_path):
    """Issue 6 item 18: a ttl over the built-in max_ttl is refused at load."""
    (tmp_path / "actionlinks.toml").write_text("[actions.password-reset]\nttl = '5h'\n")
    with pytest.raises(ConfigurationError, match="beyond the action's maximum"):
        Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})


def test_redirect_origins_may_be_a_toml_list(tmp_path):
    """Issue 6 item 18: a TOML list works; entries must be bare origins."""
    (tmp_path / "actionlinks.toml").write_text(
        'redirect_origins = ["https://a.example", "https://b.example:8443/"]\n'
    )
    settings = Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})
    assert settings.redirect_origins == ("https://a.example", "https://b.example:8443")
    (tmp_path / "actionlinks.toml").write_text(
        'redirect_origins = ["https://a.example/path"]\n'
    )
    with pytest.raises(ConfigurationError, match="scheme://host"):
        Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("ACTIONLINKS_BASEURL", "ACTIONLINKS_BASE_URL"),
        ("ACTIONLINKS_WEBHOOK_ALLOW_PRIVAT", "ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE"),
        ("ACTIONLINKS_REDIRECT_ORIGIN", "ACTIONLINKS_REDIRECT_ORIGINS"),
    ],
)
def test_misspelt_variables_name_the_nearest_one(tmp_path, name, suggestion):
    """Issue 6 item 18: the error names the variable and suggests the nearest."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path), name: "x"})
    assert name in str(caught.value)
    assert f"did you mean {suggestion}?" in str(caught.value)


def test_misspelt_config_keys_name_the_nearest_one(tmp_path):
    """The same help for a key of actionlinks.toml."""
    (tmp_path / "actionlinks.toml").write_text('base_ur = "https://x.example"\n')
    with pytest.raises(ConfigurationError, match="did you mean base_url"):
        Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})


@pytest.mark.parametrize(
    "toml",
    [
        "[actions.invite]\nbinds_state = true\n",
        "[actions.invite]\nttl = 5\none_time = 'yes'\n",
        "leeway = 'thirty'\n",
        "webhook_allow_private = 'maybe'\n",
        "webhook_retry_schedule = [1, 99999999999]\n",
    ],
)
def test_values_nothing_could_honour_are_refused(tmp_path, toml):
    """State binding without code, non-boolean flags, overflowing schedules."""
    (tmp_path / "actionlinks.toml").write_text(toml)
    with pytest.raises(ConfigurationError):
        Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})


def test_keys_file_may_live_elsewhere(tmp_path):
    """ACTIONLINKS_KEYS_FILE names the keys file (a mounted secret, say)."""
    settings = Settings.from_env(
        {"ACTIONLINKS_HOME": str(tmp_path), "ACTIONLINKS_KEYS_FILE": "/run/keys.json"}
    )
    assert str(settings.keys_path) == "/run/keys.json"


@pytest.mark.parametrize(
    "url", ["https://x.example/%41", "https://x.example/é", "https://x.example/"]
)
def test_the_written_config_reads_back_the_same_base_url(tmp_path, url):
    """Audit: init writes TOML strings escaped, so any base URL reads back."""
    (tmp_path / "actionlinks.toml").write_text(default_config(url, url))
    settings = Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})
    assert settings.base_url == url.rstrip("/")
    assert settings.issuer == url


@pytest.mark.parametrize(
    "url", ['http://x/a"b', "http://x/a\nb", "http://x/ y", "http://x/a\\u0041"]
)
def test_base_urls_with_unsafe_characters_are_refused(tmp_path, url):
    """Audit: quotes, spaces and controls would break links and the config."""
    with pytest.raises(ConfigurationError, match="percent-encode"):
        Settings(home=tmp_path, base_url=url)


@pytest.mark.parametrize(
    "toml",
    [
        'keys_file = "\\u0000"\n',
        'database_url = "sqlite:///\\u0000"\n',
        '[actions.invite]\nhandler_url = "https://a.com\\u0000/x"\n',
    ],
)
def test_control_characters_in_settings_are_refused(tmp_path, toml):
    """Second audit: NUL in a path or URL is a configuration error, not a crash."""
    (tmp_path / "actionlinks.toml").write_text(toml)
    with pytest.raises(ConfigurationError):
        Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})
