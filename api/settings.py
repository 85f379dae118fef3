"""Typed settings from the environment (App Settings in Azure, local.settings.json locally).

A pydantic model read from `os.environ` by its fields' names, in any case, as
pydantic-settings read them (case_sensitive=False, values as text): that package's import
was a tenth of a cold process's first requests, for sources (dotenv, secrets directories,
CLI, cloud vaults) this app never used.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from api.errors import ServiceUnavailableError
from api.services.language import TRANSLATIONS
from api.utils.media import MAX_TURN_ATTACHMENT_BYTES
from api.utils.ratelimit import LARGEST_QUOTA as LARGEST_ALLOWANCE

log = logging.getLogger(__name__)

# Shipped in local.settings.example.json so a fresh checkout runs; refused in production.
DEVELOPMENT_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105

# On Azure a secret setting is a Key Vault reference (infra/main.bicep). One the platform
# cannot resolve (no such secret, or the app's identity may not read it) reaches the app as
# its literal "@Microsoft.KeyVault(...)" text ("Use Key Vault references for App Service and
# Azure Functions", Troubleshooting). That text is public, so it must never act as a secret.
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


def _comma_list(value: object) -> object:
    """A setting written as a comma list (`en,es,fr`): its items, trimmed and lower-cased."""
    if isinstance(value, str):
        return tuple(item.strip().lower() for item in value.split(",") if item.strip())
    return value


class Settings(BaseModel):
    """Every setting the API reads. Names are the environment variable names."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        defer_build=True,  # built when first read (the first request), not at import
    )

    def __init__(self, **values: Any) -> None:
        """The settings in the environment, `values` (by name) taking precedence."""
        names = {(field.alias or name).upper() for name, field in type(self).model_fields.items()}
        environment = {
            name.upper(): value for name, value in os.environ.items() if name.upper() in names
        }
        super().__init__(**environment | {name.upper(): value for name, value in values.items()})

    environment: Literal["development", "test", "production"] = Field(
        "production", alias="AXLY_ENV"
    )
    db_uri: str = Field("", alias="DB_URI")
    # `pgbouncer`: DB_URI is a transaction pooler (Azure's built-in PgBouncer on 6432), so no
    # server-side prepared statements and no session state; migrations use DB_MIGRATION_URI.
    db_pooler: Literal["none", "pgbouncer"] = Field("none", alias="DB_POOLER")
    # A direct connection (port 5432) for migrations; empty: DB_URI.
    db_migration_uri: str = Field("", alias="DB_MIGRATION_URI", repr=False)
    # The connection budget per instance: at most DB_POOL_SIZE + DB_MAX_OVERFLOW connections.
    db_pool_size: int = Field(5, alias="DB_POOL_SIZE", ge=1, le=50)
    db_max_overflow: int = Field(0, alias="DB_MAX_OVERFLOW", ge=0, le=50)
    # How long a request waits for a free pooled connection before answering 503.
    db_pool_timeout_s: float = Field(10.0, alias="DB_POOL_TIMEOUT_S", gt=0, le=60)
    db_pool_recycle_s: int = Field(300, alias="DB_POOL_RECYCLE_S", ge=30, le=86_400)
    # Per-connection bounds, all well below DIAGNOSE_DEADLINE_S: a frozen or unreachable
    # database answers 503 instead of holding requests (see api/db.py).
    db_statement_timeout_s: float = Field(15.0, alias="DB_STATEMENT_TIMEOUT_S", ge=1, le=120)
    db_idle_in_transaction_timeout_s: float = Field(
        30.0, alias="DB_IDLE_IN_TRANSACTION_TIMEOUT_S", ge=1, le=600
    )
    db_connect_timeout_s: int = Field(5, alias="DB_CONNECT_TIMEOUT_S", ge=2, le=60)
    db_keepalives_idle_s: int = Field(30, alias="DB_KEEPALIVES_IDLE_S", ge=1, le=7200)
    db_migrate_on_startup: bool = Field(True, alias="DB_MIGRATE_ON_STARTUP")

    jwt_secret: str = Field("", alias="JWT_SECRET", repr=False)
    jwt_issuer: str = Field("https://api.axly.pro", alias="JWT_ISSUER")
    jwt_audience: str = Field("axly-app", alias="JWT_AUDIENCE")
    access_token_minutes: int = Field(30, alias="ACCESS_TOKEN_MINUTES", ge=1, le=24 * 60)
    refresh_token_days: int = Field(30, alias="REFRESH_TOKEN_DAYS", ge=1, le=365)
    # A rotated refresh token presented again within this many seconds gets a fresh pair for
    # the same session instead of ending it (two screens refreshing at once); 0: never.
    refresh_reuse_interval_s: int = Field(10, alias="REFRESH_REUSE_INTERVAL_S", ge=0, le=300)

    max_body_bytes: int = Field(1_000_000, alias="MAX_BODY_BYTES", ge=1024)
    app_version: str = Field("0.1.0", alias="APP_VERSION")

    # Garage: caps per account, so one user (or a runaway client) cannot grow without bound.
    max_vehicles_per_user: int = Field(50, alias="MAX_VEHICLES_PER_USER", ge=1, le=10_000)
    max_mods_per_vehicle: int = Field(200, alias="MAX_MODS_PER_VEHICLE", ge=1, le=10_000)

    # --- AI diagnosis (OpenAI, or Azure OpenAI when AZURE_OPENAI_ENDPOINT is set) ---
    openai_api_key: str = Field("", alias="OPENAI_API_KEY", repr=False)
    openai_base_url: str = Field("", alias="OPENAI_BASE_URL")
    openai_model: str = Field("gpt-4o-mini", alias="OPENAI_MODEL", min_length=1)
    openai_transcribe_model: str = Field(
        "gpt-4o-mini-transcribe", alias="OPENAI_TRANSCRIBE_MODEL", min_length=1
    )
    # An audio-capable chat model for listening to WAV/MP3 recordings; empty = none.
    openai_audio_model: str = Field("", alias="OPENAI_AUDIO_MODEL")
    # Azure's front end drops HTTP requests at about 230 s: stay well below it.
    openai_timeout_s: float = Field(60.0, alias="OPENAI_TIMEOUT_S", gt=0, le=200)
    openai_max_retries: int = Field(2, alias="OPENAI_MAX_RETRIES", ge=0, le=5)
    # The whole turn (every provider call and retry) must end before Azure's ~230 s.
    diagnose_deadline_s: float = Field(180.0, alias="DIAGNOSE_DEADLINE_S", ge=10, le=220)
    azure_openai_endpoint: str = Field("", alias="AZURE_OPENAI_ENDPOINT")
    azure_openai_api_key: str = Field("", alias="AZURE_OPENAI_API_KEY", repr=False)
    azure_openai_deployment: str = Field("", alias="AZURE_OPENAI_DEPLOYMENT")
    azure_openai_api_version: str = Field("2024-10-21", alias="AZURE_OPENAI_API_VERSION")
    diagnose_history_turns: int = Field(20, alias="DIAGNOSE_HISTORY_TURNS", ge=0, le=100)
    diagnoses_per_day: int = Field(50, alias="DIAGNOSES_PER_DAY", ge=1, le=LARGEST_ALLOWANCE)
    # Attachment bytes newly stored per user in any 24 hours (identical files count once). At
    # least what one turn may carry, so a single turn always fits an empty allowance.
    attachment_bytes_per_day: int = Field(
        200_000_000,
        alias="ATTACHMENT_BYTES_PER_DAY",
        ge=MAX_TURN_ATTACHMENT_BYTES,
        le=LARGEST_ALLOWANCE,
    )
    messages_per_conversation: int = Field(200, alias="MESSAGES_PER_CONVERSATION", ge=2)
    # Room for 4 images of 8 MB and 25 MB of audio once Base64 has grown them by a third.
    diagnose_max_body_bytes: int = Field(
        60_000_000, alias="DIAGNOSE_MAX_BODY_BYTES", ge=1024, le=100_000_000
    )
    # Languages diagnoses are answered in (comma list of language subtags); each needs its
    # translations in api/services/language.py. Anything else asked for gets the default.
    supported_languages: Annotated[tuple[str, ...], BeforeValidator(_comma_list)] = Field(
        ("en", "es", "fr", "de", "pt"), alias="SUPPORTED_LANGUAGES"
    )
    default_language: str = Field("en", alias="DEFAULT_LANGUAGE", pattern=r"^[a-z]{2,3}$")

    # --- Accounts: PINs, password hashing, e-mail delivery ---------------------------------
    # ASVS 5.0 allows an e-mailed code to live at most 10 minutes.
    pin_exp_minutes: int = Field(10, alias="PIN_EXP_MINUTES", ge=1, le=10)
    # bcrypt work factor: each +1 doubles the cost; below 10 is too cheap to resist cracking.
    bcrypt_rounds: int = Field(12, alias="BCRYPT_ROUNDS", ge=10, le=16)
    # Password hashes computed at once per process (0: one per CPU core), so a burst of
    # logins queues instead of taking every core from the other requests.
    bcrypt_max_concurrency: int = Field(0, alias="BCRYPT_MAX_CONCURRENCY", ge=0, le=64)
    # --- Abuse limits (api/services/limits.py) ---------------------------------------------
    # Wrong PINs per e-mail address and purpose in 24 hours (each PIN also dies after 5).
    pin_wrong_tries_per_day: int = Field(20, alias="PIN_WRONG_TRIES_PER_DAY", ge=5, le=1000)
    # PIN e-mails (sign-up and reset, every address) per hour: the sender's budget and name.
    pin_emails_per_hour: int = Field(1000, alias="PIN_EMAILS_PER_HOUR", ge=1)
    # Per client address (Azure's front end's X-Forwarded-For hop) per hour: PIN e-mails asked
    # for, and failed logins and PIN confirmations. Generous: carriers put many phones
    # behind one address.
    client_pin_requests_per_hour: int = Field(20, alias="CLIENT_PIN_REQUESTS_PER_HOUR", ge=1)
    client_auth_failures_per_hour: int = Field(50, alias="CLIENT_AUTH_FAILURES_PER_HOUR", ge=1)
    product_name: str = Field("Axly", alias="PRODUCT_NAME", min_length=1, max_length=60)
    email_from: str = Field("no-reply@axly.pro", alias="EMAIL_FROM", min_length=3)
    # The first configured backend wins: SendGrid, then SMTP, else the console (development).
    sendgrid_key: str = Field("", alias="SENDGRID_KEY", repr=False)
    sendgrid_api_host: str = Field("https://api.sendgrid.com", alias="SENDGRID_API_HOST")
    smtp_host: str = Field("", alias="SMTP_HOST")
    smtp_port: int = Field(587, alias="SMTP_PORT", ge=1, le=65535)
    smtp_username: str = Field("", alias="SMTP_USERNAME")
    smtp_password: str = Field("", alias="SMTP_PASSWORD", repr=False)
    smtp_starttls: bool = Field(True, alias="SMTP_STARTTLS")

    # --- Telemetry: exported to Application Insights only when a connection string is set ---
    # Not secrets: Microsoft documents the connection string (and its instrumentation key)
    # as an identifier that only allows sending telemetry.
    applicationinsights_connection_string: str = Field(
        "", alias="APPLICATIONINSIGHTS_CONNECTION_STRING"
    )
    # The seed's setting, still honoured (with a warning to move to the connection string).
    appinsights_instrumentationkey: str = Field("", alias="APPINSIGHTS_INSTRUMENTATIONKEY")
    # Share of requests (and their dependencies) traced; exceptions, custom events and
    # metrics are always sent whatever it is (see README, Observability).
    telemetry_sampling_ratio: float = Field(1.0, alias="TELEMETRY_SAMPLING_RATIO", ge=0, le=1)

    @property
    def bcrypt_slots(self) -> int:
        """BCRYPT_MAX_CONCURRENCY, with 0 read as the CPUs this process may really use (its
        affinity and its container's CPU quota, not the machine's cores)."""
        from api.utils.cpus import usable_cpus

        return self.bcrypt_max_concurrency or usable_cpus()

    @model_validator(mode="before")
    @classmethod
    def _refuse_unresolved_key_vault_references(cls, data: dict[str, Any]) -> dict[str, Any]:
        unresolved = sorted(
            name.upper()
            for name, value in data.items()
            if isinstance(value, str) and value.strip().startswith(KEY_VAULT_REFERENCE)
        )
        if unresolved:
            raise ValueError(
                f"{', '.join(unresolved)}: unresolved Key Vault reference; create the "
                "secret and grant the app's identity Key Vault Secrets User"
            )
        return data

    @model_validator(mode="after")
    def _languages_have_translations(self) -> Settings:
        untranslated = [code for code in self.supported_languages if code not in TRANSLATIONS]
        if untranslated or not self.supported_languages:
            raise ValueError(
                f"SUPPORTED_LANGUAGES: {', '.join(untranslated) or 'empty'}: name languages "
                f"with translations in api/services/language.py ({', '.join(TRANSLATIONS)})"
            )
        if self.default_language not in self.supported_languages:
            raise ValueError("DEFAULT_LANGUAGE must be one of SUPPORTED_LANGUAGES")
        return self

    @property
    def migration_uri(self) -> str:
        """Where migrations run: DB_MIGRATION_URI, else DB_URI."""
        return self.db_migration_uri or self.db_uri

    @model_validator(mode="after")
    def _migrations_bypass_a_transaction_pooler(self) -> Settings:
        # Alembic's upgrade holds a session-level advisory lock across transactions, which a
        # transaction pooler would hand to other clients' server connections.
        if (
            self.db_pooler == "pgbouncer"
            and self.db_migrate_on_startup
            and not self.db_migration_uri
        ):
            raise ValueError(
                "DB_POOLER=pgbouncer: set DB_MIGRATION_URI to a direct connection (port 5432) "
                "for start-up migrations, or DB_MIGRATE_ON_STARTUP=false"
            )
        return self

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Settings:
        if len(self.jwt_secret.encode()) < 32:
            raise ValueError("JWT_SECRET must be a random value of at least 32 bytes")
        if self.environment == "production" and self.jwt_secret == DEVELOPMENT_JWT_SECRET:
            raise ValueError("JWT_SECRET is the development placeholder; set a real secret")
        return self


class MisconfiguredError(ServiceUnavailableError):
    """A setting fails validation at runtime (an App Setting changed to a bad value): every
    request answers 503 naming the settings — never their values — until it is fixed."""

    code = "misconfigured"


_reported: set[tuple[str, ...]] = set()  # what was logged, so each problem is logged once
_reported_lock = threading.Lock()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (tests clear the cache after changing the env);
    MisconfiguredError while they are invalid (read again on each call: fixing the App
    Setting restarts the app anyway, and a new value is seen at once)."""
    try:
        return Settings()
    except ValidationError as invalid:
        raise _misconfigured(invalid) from None


def _misconfigured(invalid: ValidationError) -> MisconfiguredError:
    """The names of the settings `invalid` is about (a field's alias, or those a check's
    message names); logged as an error the first time, with the reasons (no values)."""
    aliases = {field.alias or name.upper() for name, field in Settings.model_fields.items()}
    names: set[str] = set()
    reasons = []
    for error in invalid.errors(include_url=False, include_input=False):
        located = [str(part) for part in error["loc"] if str(part).upper() in aliases]
        named = located or [alias for alias in aliases if alias in error["msg"]]
        names.update(part.upper() for part in named)
        reasons.append(f"{', '.join(named) or 'settings'}: {error['msg']}")
    settings = tuple(sorted(names)) or ("settings",)
    with _reported_lock:
        if settings not in _reported:
            _reported.add(settings)
            log.error("Invalid settings; every request answers 503: %s", "; ".join(reasons))
    return MisconfiguredError(
        f"The server is misconfigured ({', '.join(settings)}); its operators have been told",
        extra={"settings": list(settings)},
    )
