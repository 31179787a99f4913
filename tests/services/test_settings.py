"""deltaml.settings: every environment variable read in one place, secrets from files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deltaml import settings
from deltaml.errors import DeltaMLValueError
from deltaml.settings import Settings


def test_nothing_set_gives_the_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.password is None and s.database_url is None and s.ca_file is None
    assert s.allow_test_keys is False and s.anvil_bin is None


def test_plain_variables_are_read() -> None:
    s = Settings.from_env(
        {
            "DELTAML_PASSWORD": "pw",
            "DELTAML_DATABASE_URL": "postgresql://db/x",
            "DELTAML_CA_FILE": "/etc/ca.pem",
            "DELTAML_ALLOW_TEST_KEYS": "1",
            "DELTAML_ANVIL_BIN": "/opt/anvil",
        }
    )
    assert s.password == "pw"
    assert s.database_url == "postgresql://db/x"
    assert s.ca_file == "/etc/ca.pem"
    assert s.allow_test_keys is True
    assert s.anvil_bin == Path("/opt/anvil")


def test_test_keys_need_exactly_one() -> None:
    assert settings.test_keys_allowed({"DELTAML_ALLOW_TEST_KEYS": "true"}) is False
    assert settings.test_keys_allowed({"DELTAML_ALLOW_TEST_KEYS": "0"}) is False


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("secret\n", "secret"),
        ("secret\r\n", "secret"),
        ("secret", "secret"),
        ("secret\n\n", "secret\n"),  # one newline only
        (" spaced secret \n", " spaced secret "),
    ],
)
def test_password_file_strips_one_trailing_newline(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "password"
    path.write_bytes(content.encode())
    assert settings.password({"DELTAML_PASSWORD_FILE": str(path)}) == expected


def test_database_url_file(tmp_path: Path) -> None:
    path = tmp_path / "url"
    path.write_text("postgresql://u:p@db/deltaml\n")
    env = {"DELTAML_DATABASE_URL_FILE": str(path)}
    assert Settings.from_env(env).database_url == "postgresql://u:p@db/deltaml"


def test_database_url_falls_back_to_the_conventional_name(tmp_path: Path) -> None:
    assert settings.database_url({"DATABASE_URL": "sqlite:///a"}) == "sqlite:///a"
    both = {"DATABASE_URL": "sqlite:///a", "DELTAML_DATABASE_URL": "sqlite:///b"}
    assert settings.database_url(both) == "sqlite:///b"


@pytest.mark.parametrize("name", ["DELTAML_PASSWORD", "DELTAML_DATABASE_URL"])
def test_a_variable_and_its_file_both_set_is_an_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / "secret"
    path.write_text("from the file\n")
    with pytest.raises(DeltaMLValueError, match=f"set {name} or {name}_FILE, not both"):
        Settings.from_env({name: "plain", name + "_FILE": str(path)})


def test_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DeltaMLValueError) as caught:
        Settings.from_env({"DELTAML_PASSWORD_FILE": str(missing)})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("DELTAML_PASSWORD_FILE: cannot read")
    assert str(missing) in message


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DeltaMLValueError, match="DELTAML_DATABASE_URL_FILE: cannot read"):
        settings.database_url({"DELTAML_DATABASE_URL_FILE": str(tmp_path)})  # a folder
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DeltaMLValueError, match="not UTF-8"):
        settings.password({"DELTAML_PASSWORD_FILE": str(binary)})


def test_require_password_names_both_variables() -> None:
    with pytest.raises(DeltaMLValueError, match=r"DELTAML_PASSWORD \(or DELTAML_PASSWORD_FILE\)"):
        settings.require_password({})
    with pytest.raises(DeltaMLValueError):
        settings.require_password({"DELTAML_PASSWORD": ""})
    assert Settings(password="x").require_password() == "x"


def test_secrets_stay_out_of_the_repr() -> None:
    s = Settings(password="hunter2", database_url="postgresql://u:pw@db/x")
    assert "hunter2" not in repr(s)
    assert "pw@db" not in repr(s)


def test_compose_ports() -> None:
    assert settings.compose_ports({})["aggregator"] == 8700
    assert settings.compose_ports({"DELTAML_BUYER_PORT": "9000"})["buyer"] == 9000
    with pytest.raises(DeltaMLValueError, match="DELTAML_CHAIN_PORT='x': not a port number"):
        settings.compose_ports({"DELTAML_CHAIN_PORT": "x"})
    with pytest.raises(DeltaMLValueError, match="between 1 and 65535"):
        settings.compose_ports({"DELTAML_CHAIN_PORT": "70000"})


def test_the_readers_see_changes_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing is cached: the key check and the CA file follow the environment."""
    from deltaml.crypto.paillier import test_keys_allowed
    from deltaml.services.serve import password_from_env

    monkeypatch.delenv("DELTAML_ALLOW_TEST_KEYS", raising=False)
    assert test_keys_allowed() is False
    monkeypatch.setenv("DELTAML_ALLOW_TEST_KEYS", "1")
    assert test_keys_allowed() is True
    monkeypatch.delenv("DELTAML_PASSWORD", raising=False)
    path = tmp_path / "pw"
    path.write_text("from a file\n")
    monkeypatch.setenv("DELTAML_PASSWORD_FILE", str(path))
    assert password_from_env() == "from a file"
    monkeypatch.setenv("DELTAML_CA_FILE", "")  # restored (unset) after the test
    assert settings.ca_file() is None
    settings.set_ca_file(path)
    assert settings.ca_file() == str(path.resolve())


def test_importing_reads_nothing_and_imports_no_other_deltaml_module() -> None:
    code = (
        "import sys; import deltaml.settings; "
        "print(sorted(m for m in sys.modules if m.startswith('deltaml')))"
    )
    env = {**os.environ, "DELTAML_PASSWORD_FILE": "/nonexistent/file"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "['deltaml', 'deltaml.errors', 'deltaml.settings']"


def test_a_node_starts_from_secret_files(tmp_path: Path) -> None:
    """The password and the database URL of ``deltaml … serve`` from DELTAML_*_FILE."""
    import argparse

    from deltaml.ledger.accounts import load_keystore
    from deltaml.services.commands import _node_basics

    (tmp_path / "pw").write_text("from a secret file\n")
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    (tmp_path / "url").write_text(url + "\n")
    env = Settings.from_env(
        {
            "DELTAML_PASSWORD_FILE": str(tmp_path / "pw"),
            "DELTAML_DATABASE_URL_FILE": str(tmp_path / "url"),
            "DATABASE_URL": "sqlite:///ignored.sqlite",
        }
    )
    args = argparse.Namespace(dir=tmp_path / "node", database_url=None, demo_keys=True)
    account, db_url, password = _node_basics(args, "buyer", env)
    assert password == "from a secret file"
    assert db_url == url
    assert load_keystore(tmp_path / "node" / "account.json", password).address == account.address
    # --database-url still wins over the environment.
    args.database_url = "sqlite:///given.sqlite"
    assert _node_basics(args, "buyer", env)[1] == "sqlite:///given.sqlite"
