"""Typed settings from the environment (App Settings in Azure, local.settings.json locally)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Shipped in local.settings.example.json so a fresh checkout runs; refused in production.
DEVELOPMENT_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105


class Settings(BaseSettings):
    """Every setting the API reads. Names are the environment variable names."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    environment: Literal["development", "test", "production"] = Field(
        "production", alias="AXLY_ENV"
    )
    db_uri: str = Field("", alias="DB_URI")
    db_pool_size: int = Field(5, alias="DB_POOL_SIZE", ge=1, le=50)
    db_migrate_on_startup: bool = Field(True, alias="DB_MIGRATE_ON_STARTUP")

    jwt_secret: str = Field("", alias="JWT_SECRET")
    jwt_issuer: str = Field("https://api.axly.pro", alias="JWT_ISSUER")
    jwt_audience: str = Field("axly-app", alias="JWT_AUDIENCE")
    access_token_minutes: int = Field(30, alias="ACCESS_TOKEN_MINUTES", ge=1, le=24 * 60)
    refresh_token_days: int = Field(30, alias="REFRESH_TOKEN_DAYS", ge=1, le=365)

    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="CORS_ALLOWED_ORIGINS"
    )
    max_body_bytes: int = Field(1_000_000, alias="MAX_BODY_BYTES", ge=1024)
    app_version: str = Field("0.1.0", alias="APP_VERSION")

    # --- Accounts: PINs, password hashing, e-mail delivery ---------------------------------
    # ASVS 5.0 allows an e-mailed code to live at most 10 minutes.
    pin_exp_minutes: int = Field(10, alias="PIN_EXP_MINUTES", ge=1, le=10)
    # bcrypt work factor: each +1 doubles the cost; below 10 is too cheap to resist cracking.
    bcrypt_rounds: int = Field(12, alias="BCRYPT_ROUNDS", ge=10, le=16)
    product_name: str = Field("Axly", alias="PRODUCT_NAME", min_length=1, max_length=60)
    email_from: str = Field("no-reply@axly.pro", alias="EMAIL_FROM", min_length=3)
    # The first configured backend wins: SendGrid, then SMTP, else the console (development).
    sendgrid_key: str = Field("", alias="SENDGRID_KEY")
    sendgrid_api_host: str = Field("https://api.sendgrid.com", alias="SENDGRID_API_HOST")
    smtp_host: str = Field("", alias="SMTP_HOST")
    smtp_port: int = Field(587, alias="SMTP_PORT", ge=1, le=65535)
    smtp_username: str = Field("", alias="SMTP_USERNAME")
    smtp_password: str = Field("", alias="SMTP_PASSWORD")
    smtp_starttls: bool = Field(True, alias="SMTP_STARTTLS")

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _no_wildcard(cls, origins: list[str]) -> list[str]:
        if "*" in origins:
            raise ValueError("CORS_ALLOWED_ORIGINS is an exact allowlist; '*' is not allowed")
        return origins

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Settings:
        if len(self.jwt_secret.encode()) < 32:
            raise ValueError("JWT_SECRET must be a random value of at least 32 bytes")
        if self.environment == "production" and self.jwt_secret == DEVELOPMENT_JWT_SECRET:
            raise ValueError("JWT_SECRET is the development placeholder; set a real secret")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (tests clear the cache after changing the env)."""
    return Settings()
