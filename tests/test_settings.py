"""Settings refuse what would make the API insecure, and parse what operators type."""

from typing import Any

import pytest
from pydantic import ValidationError

from api.settings import DEVELOPMENT_JWT_SECRET, Settings
from api.utils.media import MAX_TURN_ATTACHMENT_BYTES

STRONG_SECRET = "s" * 32


def make(**env: str) -> Settings:
    values: dict[str, Any] = {"JWT_SECRET": STRONG_SECRET, **env}  # text, as operators type it
    return Settings(_env_file=None, **values)


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
        Settings(_env_file=None)
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
    assert make().attachment_bytes_per_day >= MAX_TURN_ATTACHMENT_BYTES
