"""Settings: the passphrase from a private file; nothing secret in their JSON form."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from onceonly.settings import Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("ONCEONLY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(Path(__file__).parent)  # no .env here


def _passphrase_file(home: Path, mode: int = 0o600, text: str = "from-the-file\n") -> Path:
    path = home / "secrets" / "key-passphrase"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_the_demo_passphrase_file_is_found_under_the_home(tmp_path: Path, clean_env: None) -> None:
    assert Settings(home=tmp_path).key_passphrase is None  # none anywhere
    _passphrase_file(tmp_path)
    settings = Settings(home=tmp_path)
    assert settings.key_passphrase is not None
    assert settings.key_passphrase.get_secret_value() == "from-the-file"


def test_the_environment_wins_over_the_file(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _passphrase_file(tmp_path)
    monkeypatch.setenv("ONCEONLY_KEY_PASSPHRASE", "from-the-environment")
    secret = Settings(home=tmp_path).key_passphrase
    assert secret is not None and secret.get_secret_value() == "from-the-environment"


def test_a_passphrase_file_others_can_read_is_refused_saying_how_to_fix_it(
    tmp_path: Path, clean_env: None
) -> None:
    path = _passphrase_file(tmp_path, mode=0o644)
    with pytest.raises(ValidationError, match=f"readable by others.*chmod 600 {path}"):
        Settings(home=tmp_path)


def test_a_named_passphrase_file_must_exist(tmp_path: Path, clean_env: None) -> None:
    with pytest.raises(ValidationError, match="cannot read the key passphrase file"):
        Settings(home=tmp_path, key_passphrase_file=tmp_path / "missing")


def test_the_json_form_prefect_stores_holds_no_secret(tmp_path: Path, clean_env: None) -> None:
    settings = Settings(
        home=tmp_path,
        database_url="postgresql+psycopg://onceonly:s3cret-pw@db.example/onceonly",
        key_passphrase="very-secret-passphrase",
    )
    text = settings.model_dump_json()
    assert "s3cret-pw" not in text and "very-secret-passphrase" not in text
    data = json.loads(text)
    assert data["database_url"] == "postgresql+psycopg://onceonly:***@db.example/onceonly"
    assert settings.catalog_url.endswith(":s3cret-pw@db.example/onceonly")  # the live value is intact


def test_a_password_in_the_database_urls_query_is_refused(tmp_path: Path) -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="password in its query string"):
        Settings(home=tmp_path, database_url="postgresql+psycopg://u@db/x?password=S3cret")


def test_the_lake_is_a_folder_or_an_object_stores_url(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = Settings(home=tmp_path)
    assert default.lake_is_local and default.lake_dir == tmp_path / "lake"
    assert default.lake_location == str((tmp_path / "lake").resolve())
    assert Settings(home=tmp_path, lake_url=f"file://{tmp_path}/shared").lake_dir == tmp_path / "shared"
    monkeypatch.setenv("ONCEONLY_LAKE_URL", "s3://district/wuqing/lake")
    monkeypatch.setenv("ONCEONLY_LAKE_STORAGE_OPTIONS", '{"endpoint_url": "http://127.0.0.1:9000"}')
    on_s3 = Settings(home=tmp_path)
    assert not on_s3.lake_is_local and on_s3.lake_location == "s3://district/wuqing/lake"
    assert on_s3.lake_storage_options == {"endpoint_url": "http://127.0.0.1:9000"}


@pytest.mark.parametrize(
    "options",
    [{"key": "AKIA"}, {"secret": "x"}, {"client_kwargs": {"aws_secret_access_key": "x"}}, {"token": "t"}],
)
def test_credentials_in_the_lakes_storage_options_are_refused(
    tmp_path: Path, clean_env: None, options: dict[str, object]
) -> None:
    # They would travel with the flow-run parameters, which Prefect stores in clear.
    with pytest.raises(ValidationError, match=r"holds credentials .*AWS_ACCESS_KEY_ID"):
        Settings(home=tmp_path, lake_url="s3://district/lake", lake_storage_options=options)


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        ({"s3_additional_kwargs": {"SSECustomerKey": "k" * 32}}, "s3_additional_kwargs not accepted"),
        ({"account_key": "abc"}, "account_key not accepted"),
        ({"client_kwargs": {"endpoint_url": "https://me:pw@minio:9000"}}, "a user or password"),
        ({"endpoint_url": "https://me:pw@minio:9000"}, "a user or password"),
    ],
)
def test_only_known_storage_options_without_secrets_are_accepted(
    tmp_path: Path, clean_env: None, options: dict[str, object], refused: str
) -> None:
    with pytest.raises(ValidationError, match=refused):
        Settings(home=tmp_path, lake_url="s3://district/lake", lake_storage_options=options)
    with pytest.raises(ValidationError, match="a user or password"):
        Settings(home=tmp_path, lake_url="s3://AKIA:secret@district/lake")
    fine = {"endpoint_url": "http://127.0.0.1:9000", "config_kwargs": {"retries": {"max_attempts": 5}}}
    assert (
        Settings(home=tmp_path, lake_url="s3://district/lake", lake_storage_options=fine).lake_storage_options
        == fine
    )
