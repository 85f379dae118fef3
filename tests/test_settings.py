"""Settings refuse what would make the API insecure, and parse what operators type."""

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from api.settings import DEVELOPMENT_JWT_SECRET, Settings
from api.utils.media import MAX_TURN_ATTACHMENT_BYTES
from tests.harness import changed_settings

STRONG_SECRET = "s" * 32


def make(**env: str) -> Settings:
    values: dict[str, Any] = {"JWT_SECRET": STRONG_SECRET, **env}  # text, as operators type it
    return Settings(**values)


@pytest.mark.parametrize("secret", ["tiny-secret", "x" * 31])
def test_short_jwt_secret_is_refused_without_echoing_it(secret: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes") as error:
        make(JWT_SECRET=secret, AXLY_ENV="development")
    assert secret not in str(error.value)


def test_missing_jwt_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        make(JWT_SECRET="")


def test_development_placeholder_is_refused_in_production_only() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        make(JWT_SECRET=DEVELOPMENT_JWT_SECRET, AXLY_ENV="production")
    assert make(JWT_SECRET=DEVELOPMENT_JWT_SECRET, AXLY_ENV="development").jwt_secret


def test_production_is_the_default_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AXLY_ENV")
    assert make().environment == "production"


def test_an_unresolved_key_vault_reference_is_refused_not_taken_as_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What Azure passes on when the vault has no such secret or denies the app's identity.
    reference = "@Microsoft.KeyVault(VaultName=kv-axly;SecretName=jwt-secret)"
    monkeypatch.setenv("JWT_SECRET", reference)
    monkeypatch.setenv("SENDGRID_KEY", reference)
    with pytest.raises(
        ValidationError, match="JWT_SECRET, SENDGRID_KEY: unresolved Key Vault"
    ) as error:
        Settings()
    assert "kv-axly" not in str(error.value)


def test_a_transaction_pooler_needs_a_direct_connection_for_start_up_migrations() -> None:
    with pytest.raises(ValidationError, match="set DB_MIGRATION_URI"):
        make(DB_POOLER="pgbouncer", DB_MIGRATION_URI="")
    assert make(DB_POOLER="pgbouncer", DB_MIGRATION_URI="", DB_MIGRATE_ON_STARTUP="false")
    direct = "postgresql://axly@db:5432/axly"
    pooled = make(
        DB_URI="postgresql://axly@db:6432/axly", DB_POOLER="pgbouncer", DB_MIGRATION_URI=direct
    )
    assert pooled.migration_uri == direct
    assert make(DB_URI=direct, DB_POOLER="none", DB_MIGRATION_URI="").migration_uri == direct


def test_the_attachment_allowance_fits_at_least_one_full_message() -> None:
    with pytest.raises(ValidationError, match="ATTACHMENT_BYTES_PER_DAY"):
        make(ATTACHMENT_BYTES_PER_DAY=str(MAX_TURN_ATTACHMENT_BYTES - 1))
    with pytest.raises(ValidationError, match="ATTACHMENT_BYTES_PER_DAY"):
        make(ATTACHMENT_BYTES_PER_DAY="0")  # not "unlimited"
    assert make().attachment_bytes_per_day >= MAX_TURN_ATTACHMENT_BYTES


@pytest.mark.parametrize("name", ["ATTACHMENT_BYTES_PER_DAY", "DIAGNOSES_PER_DAY"])
def test_an_allowance_too_large_for_the_ratelimit_fields_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        make(**{name: str(10**15)})  # RFC 9651 Integers have at most 15 digits


def test_answer_languages_are_a_comma_list_of_translated_languages() -> None:
    assert make(SUPPORTED_LANGUAGES=" EN, es ,pt").supported_languages == ("en", "es", "pt")
    with pytest.raises(ValidationError, match=r"SUPPORTED_LANGUAGES: it, nl: name languages"):
        make(SUPPORTED_LANGUAGES="en,it,nl")
    with pytest.raises(ValidationError, match="SUPPORTED_LANGUAGES: empty"):
        make(SUPPORTED_LANGUAGES=" , ")
    with pytest.raises(ValidationError, match="DEFAULT_LANGUAGE must be one of"):
        make(SUPPORTED_LANGUAGES="es,pt")
    assert make(SUPPORTED_LANGUAGES="es,pt", DEFAULT_LANGUAGE="es").default_language == "es"


def test_a_setting_made_invalid_at_runtime_is_a_503_naming_it_logged_once(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """An App Setting changed to a bad value reaches the app on its next request: a 503 that
    names the setting (never its value), not a 500 with a traceback."""
    with changed_settings(DIAGNOSE_DEADLINE_S="5", OPENAI_MAX_RETRIES="9"):
        responses = [client.get("/health"), client.post("/login", json={})]
    for response in responses:
        assert response.status_code == 503, response.text
        problem = response.json()
        assert problem["code"] == "misconfigured"
        assert problem["settings"] == ["DIAGNOSE_DEADLINE_S", "OPENAI_MAX_RETRIES"]
        assert "DIAGNOSE_DEADLINE_S" in problem["detail"]
        assert not any(char.isdigit() for char in problem["detail"])  # no value
        assert "Traceback" not in response.text
    errors = [r for r in caplog.records if r.name == "api.settings" and r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "DIAGNOSE_DEADLINE_S" in errors[0].getMessage()


def test_a_check_across_settings_names_the_settings_its_message_names(
    client: httpx.Client,
) -> None:
    with changed_settings(SUPPORTED_LANGUAGES="en,xx"):
        response = client.get("/health")
    assert response.status_code == 503, response.text
    assert response.json()["settings"] == ["SUPPORTED_LANGUAGES"]
    assert "xx" not in response.text
