"""Every setting api/settings.py reads has a decision in the Bicep template: set (secrets
only as Key Vault references), or listed in main.bicep as deliberately left to its default,
with the reason. A new setting without a decision fails here."""

import pytest

import bench.turns
from api.settings import Settings
from tests.infra.template import (
    KEY_VAULT_REFERENCE,
    MAIN,
    app_settings,
    identifiers,
    module,
    settings_left_to_default,
    template,
)

SETTINGS = {field.alias or name for name, field in Settings.model_fields.items()}
# Fields that never show in a repr are secrets; DB_URI carries the database password.
SECRETS = {
    field.alias or name for name, field in Settings.model_fields.items() if not field.repr
} | {"DB_URI"}


def test_every_setting_is_set_or_left_to_its_default_for_a_stated_reason() -> None:
    set_by_template = set(app_settings())
    left_to_default = settings_left_to_default()
    undecided = SETTINGS - set_by_template - set(left_to_default)
    assert not undecided, (
        f"api/settings.py reads {sorted(undecided)}, but infra/main.bicep neither sets them "
        "nor lists them as '//   NAME = default: why'"
    )
    assert not set_by_template & set(left_to_default), "set and left to default at once"
    stale = set(left_to_default) - SETTINGS
    assert not stale, (
        f"infra/main.bicep lists {sorted(stale)}, which api/settings.py no longer reads"
    )


def test_the_secrets_the_app_cannot_run_without_are_set() -> None:
    assert {"DB_URI", "JWT_SECRET", "AXLY_ENV"} <= set(app_settings())


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_a_secret_setting_is_only_ever_a_key_vault_reference(name: str) -> None:
    for value in app_settings().get(name, []):
        assert isinstance(value, str), f"{name} is computed in the template: {value}"
        assert KEY_VAULT_REFERENCE.match(value), f"{name} = {value!r} is not a Key Vault reference"


def test_the_app_runs_in_production_mode() -> None:
    assert app_settings()["AXLY_ENV"] == ["production"]


def test_no_app_setting_carries_a_secure_parameter_or_a_storage_key() -> None:
    secure = template(MAIN).secure_parameters() | module("functionapp").secure_parameters()
    for name, values in app_settings().items():
        for value in values:
            assert not identifiers(value) & secure, name
            assert "listKeys" not in str(value), name


def test_the_worker_runs_the_thread_count_the_pool_and_bcrypt_are_sized_for() -> None:
    """Unset, the worker would run min(32, cores + 4) threads: 5 on a one-core instance."""
    assert app_settings()["PYTHON_THREADPOOL_THREAD_COUNT"] == [str(bench.turns.THREADS)]
