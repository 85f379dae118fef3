"""Static checks of infra/ (no Bicep compiler can be installed here): every file parses
with pycep-parser, and the parsed templates deploy what the deployment needs, the way it
needs it. checkov runs from the Makefile (`make lint-infra`, part of `make test`)."""

import re
from pathlib import Path

import pytest

from api.telemetry.pipeline import REQUEST_ID
from tests.infra.template import (
    BICEP_FILES,
    INFRA,
    MAIN,
    app_settings,
    dotted,
    identifiers,
    module,
    module_call,
    template,
)

SECRETS_USER_ROLE = "4633458b-17de-408a-b874-0445c86b69e6"  # Key Vault Secrets User
BLOB_DATA_OWNER_ROLE = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"  # Storage Blob Data Owner


def pin(requirements: str, package: str) -> str:
    found = re.search(rf"^{package}==(\S+)$", Path(requirements).read_text(), re.MULTILINE)
    assert found, f"{package} is not pinned in {requirements}"
    return found.group(1)


@pytest.mark.parametrize("path", BICEP_FILES, ids=str)
def test_every_bicep_file_parses(path: Path) -> None:
    assert template(path).parsed["globals"]


def test_the_tests_parse_with_the_parser_checkov_uses() -> None:
    # Otherwise checkov could skip a file as a parsing error while the tests read it fine.
    assert pin("requirements-dev.txt", "pycep-parser") == pin(
        "requirements-infra.txt", "pycep-parser"
    )


def test_main_deploys_every_module() -> None:
    deployed = {call["detail"]["path"] for call in template(MAIN).parsed["modules"].values()}
    assert deployed == {str(path.relative_to(INFRA)) for path in INFRA.glob("modules/*.bicep")}


def test_every_resource_the_deployment_needs_is_declared() -> None:
    declared = {
        resource["type"]
        for path in BICEP_FILES
        for resource in template(path).parsed.get("resources", {}).values()
        if not resource["existing"]
    }
    assert declared >= {
        "Microsoft.Web/serverfarms",
        "Microsoft.Web/sites",
        "Microsoft.Web/sites/config",
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "Microsoft.DBforPostgreSQL/flexibleServers",
        "Microsoft.DBforPostgreSQL/flexibleServers/databases",
        "Microsoft.DBforPostgreSQL/flexibleServers/configurations",
        "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules",
        "Microsoft.KeyVault/vaults",
        "Microsoft.KeyVault/vaults/secrets",
        "Microsoft.Authorization/roleAssignments",
        "Microsoft.OperationalInsights/workspaces",
        "Microsoft.Insights/components",
        "Microsoft.Insights/actionGroups",
        "Microsoft.Insights/scheduledQueryRules",
        "Microsoft.Insights/metricAlerts",
    }


def test_the_function_app_is_linux_python_311_https_only_tls_12_without_ftp() -> None:
    app = module("functionapp")
    site = app.resource("Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert site["identity"] == {"type": "SystemAssigned"}
    properties = site["properties"]
    assert properties["httpsOnly"] is True
    flex, premium = app.branches(properties["functionAppConfig"])
    assert flex["runtime"] == {"name": "python", "version": "3.11"}
    assert flex["deployment"]["storage"]["authentication"] == {"type": "SystemAssignedIdentity"}
    assert premium is None
    config = properties["siteConfig"]
    assert list(app.branches(config["linuxFxVersion"])) == [None, "Python|3.11"]
    assert config["minTlsVersion"] == "1.2"
    assert config["ftpsState"] == "Disabled"
    # The platform answers CORS (DECISIONS, CORS on Azure); the app never does.
    assert config["cors"] == {"allowedOrigins": "corsAllowedOrigins", "supportCredentials": False}
    assert "CORS_ALLOWED_ORIGINS" not in app_settings()
    policies = app.resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {(p["name"], p["properties"]["allow"]) for p in policies} == {
        ("ftp", False),
        ("scm", False),
    }


def test_flex_consumption_is_the_default_plan() -> None:
    assert template(MAIN).parsed["parameters"]["hostingPlan"]["default"] == "FlexConsumption"
    plan = module("functionapp").resource("Microsoft.Web/serverfarms")
    flex, _ = module("functionapp").branches(plan["sku"])
    assert flex == {"name": "FC1", "tier": "FlexConsumption"}


def test_the_app_identity_may_read_secrets_and_the_host_storage() -> None:
    grants = {
        (
            assignment["scope"],
            assignment["properties"]["roleDefinitionId"]["function"]["parameters"][
                "resource_name_1"
            ],
            dotted(assignment["properties"]["principalId"]),
        )
        for assignment in module("functionapp").resources("Microsoft.Authorization/roleAssignments")
    }
    app = module("functionapp")
    resolved = {(scope, app.resolve(role), principal) for scope, role, principal in grants}
    assert resolved == {
        ("vault", SECRETS_USER_ROLE, "site.identity.principalId"),
        ("storage", BLOB_DATA_OWNER_ROLE, "site.identity.principalId"),
    }
    settings = app.resource("Microsoft.Web/sites/config", "appsettings")
    assert set(settings["dependsOn"]) >= {"readSecrets", "ownBlobs"}


def test_host_storage_is_tls_12_private_and_keyless_on_flex() -> None:
    storage = module("storage")
    properties = storage.resource("Microsoft.Storage/storageAccounts")["properties"]
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["allowBlobPublicAccess"] is False
    assert properties["allowSharedKeyAccess"] == "needsContentShare"
    # Only Elastic Premium gets a content share; Flex Consumption none, so no shared keys.
    main = template(MAIN)
    assert module_call("storage")["params"]["contentShareName"] == "contentShareName"
    assert main.variables["contentShareName"]["operator"]["operands"]["condition"] == "isPremium"
    _premium, flex = main.branches("contentShareName")
    assert flex == ""
    container = storage.resource("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert container["properties"]["publicAccess"] == "None"


def test_postgres_is_16_with_ssl_pgbouncer_backups_and_a_network_choice() -> None:
    postgres = module("postgres")
    server = postgres.resource("Microsoft.DBforPostgreSQL/flexibleServers")
    assert int(server["properties"]["version"]) >= 16
    assert server["properties"]["backup"]["backupRetentionDays"] == "backupRetentionDays"
    configurations = {
        c["name"]: c["properties"]["value"]
        for c in postgres.resources("Microsoft.DBforPostgreSQL/flexibleServers/configurations")
    }
    assert configurations == {"require_secure_transport": "on", "pgbouncer.enabled": "true"}
    assert "Burstable" not in postgres.allowed("tier")  # PgBouncer does not exist there
    assert template(MAIN).allowed("postgresNetworkAccess") == ["AzureServices", "VNet"]
    public, private = postgres.branches(server["properties"]["network"])
    assert private == {"publicNetworkAccess": "Enabled"}
    assert public["publicNetworkAccess"] == "Disabled"


def test_the_admin_password_goes_to_key_vault_and_the_app_reads_its_uri_from_there() -> None:
    postgres = module("postgres")
    assert "adminPassword" in postgres.secure_parameters()
    secrets = {
        s["name"]: s["properties"] for s in postgres.resources("Microsoft.KeyVault/vaults/secrets")
    }
    assert secrets["adminPasswordSecretName"]["value"] == "adminPassword"
    # Requests through the built-in PgBouncer as the app's own role (data access only:
    # deploy/app_role.py), migrations straight to PostgreSQL as the administrator.
    assert ":6432/" in secrets["dbUriSecretName"]["value"]
    assert ":5432/" in secrets["migrationUriSecretName"]["value"]
    assert (
        postgres.resolve("appCredentials")
        == "${uriComponent(appLogin)}:${uriComponent(appPassword)}"
    )
    assert secrets["dbUriSecretName"]["value"].startswith("postgresql://${appCredentials}@")
    assert secrets["migrationUriSecretName"]["value"].startswith("postgresql://${credentials}@")
    assert "appPassword" in postgres.secure_parameters()
    assert module_call("postgres")["params"]["appLogin"] == "postgresAppLogin"
    assert template(MAIN).parsed["parameters"]["postgresAppLogin"]["default"] == "axly_app"
    for name in ("dbUriSecretName", "migrationUriSecretName"):
        assert "sslmode=require" in secrets[name]["value"]
    names = module_call("postgres")["params"]
    assert names["dbUriSecretName"] == "db-uri"
    assert names["migrationUriSecretName"] == "db-migration-uri"
    assert app_settings()["DB_POOLER"] == ["pgbouncer"]


def test_key_vault_is_rbac_only_with_soft_delete_and_purge_protection() -> None:
    vault = module("keyvault").resource("Microsoft.KeyVault/vaults")["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    assert vault["enablePurgeProtection"] is True
    assert "accessPolicies" not in vault


def test_application_insights_is_workspace_based() -> None:
    monitoring = module("monitoring")
    component = monitoring.resource("Microsoft.Insights/components")["properties"]
    assert dotted(component["WorkspaceResourceId"]) == "workspace.id"


@pytest.mark.parametrize("path", BICEP_FILES, ids=str)
def test_no_secure_parameter_is_ever_output(path: Path) -> None:
    bicep = template(path)
    for name, output in bicep.parsed.get("outputs", {}).items():
        assert not identifiers(output["value"]) & bicep.secure_parameters(), f"output {name}"


def test_main_outputs_the_hostname_the_vault_and_application_insights() -> None:
    outputs = {name: dotted(o["value"]) for name, o in template(MAIN).parsed["outputs"].items()}
    assert outputs["hostname"] == "functionApp.outputs.hostname"
    assert outputs["keyVaultName"] == "keyVault.outputs.name"
    assert outputs["appInsightsId"] == "monitoring.outputs.appInsightsId"


def test_the_alerts_are_the_seeds_and_reach_a_webhook() -> None:
    alerts = module("alerts")
    failed = alerts.resource("Microsoft.Insights/scheduledQueryRules")["properties"]
    criterion = failed["criteria"]["allOf"][0]
    assert "sumif(itemCount, toint(resultCode) >= 500)" in criterion["query"]
    assert criterion["metricMeasureColumn"] == "failedPercent"
    assert (criterion["operator"], alerts.resolve(criterion["threshold"])) == ("GreaterThan", 1)
    assert alerts.resolve(failed["windowSize"]) == "PT5M"
    assert dotted(failed["scopes"][0]) == "appInsightsId"

    cpu = alerts.resource("Microsoft.Insights/metricAlerts")["properties"]
    criterion = cpu["criteria"]["allOf"][0]
    assert criterion["metricName"] == "cpu_percent"
    assert criterion["metricNamespace"] == "Microsoft.DBforPostgreSQL/flexibleServers"
    assert (criterion["operator"], alerts.resolve(criterion["threshold"])) == ("GreaterThan", 70)
    assert alerts.resolve(cpu["windowSize"]) == "PT10M"

    group = alerts.resource("Microsoft.Insights/actionGroups")["properties"]
    assert len(group["webhookReceivers"]) == 1
    assert dotted(failed["actions"]["actionGroups"][0]) == "actionGroup.id"
    assert dotted(cpu["actions"][0]["actionGroupId"]) == "actionGroup.id"
    # The Slack URL reaches only the relay, as a secure workflow parameter.
    assert alerts.secure_parameters() == {"slackWebhookUrl"}
    relay = alerts.resource("Microsoft.Logic/workflows")["properties"]
    assert relay["definition"]["parameters"]["slackWebhookUrl"] == {"type": "SecureString"}


def test_the_parameters_file_fills_main_and_takes_secrets_from_the_environment() -> None:
    text = (INFRA / "main.bicepparam").read_text()
    assert re.search(r"^using 'main\.bicep'$", text, re.MULTILINE)
    given = dict(re.findall(r"^param (\w+) = (.+)$", text, re.MULTILINE))
    declared = template(MAIN).parsed["parameters"]
    assert set(given) <= set(declared)
    assert {name for name, p in declared.items() if p["default"] is None} <= set(given)
    for name in template(MAIN).secure_parameters():
        assert given[name].startswith("readEnvironmentVariable("), name


@pytest.mark.parametrize(
    "name", ["monitoring", "keyvault", "storage", "postgres", "functionapp", "alerts"]
)
def test_main_passes_each_module_its_parameters_and_reads_only_its_outputs(name: str) -> None:
    # What a Bicep compiler would check first.
    declared = module(name).parsed.get("parameters", {})
    passed = module_call(name)["params"]
    assert set(passed) <= set(declared), "passes a parameter the module does not declare"
    required = {p for p, spec in declared.items() if spec["default"] is None}
    assert required <= set(passed), "leaves out a parameter without default"
    symbol = next(
        symbol
        for symbol, call in template(MAIN).parsed["modules"].items()
        if call["detail"]["path"] == f"modules/{name}.bicep"
    )
    read = set(re.findall(rf"\b{symbol}\.outputs\.(\w+)", template(MAIN).text))
    assert read <= set(module(name).parsed.get("outputs", {}))


def test_the_5xx_alert_counts_each_invocation_once_whatever_the_sampling() -> None:
    """The host and the app each write a request row per invocation: only the host's count
    (the app's carry the request_id dimension), each weighted by its itemCount."""
    query = module("alerts").resource("Microsoft.Insights/scheduledQueryRules")["properties"][
        "criteria"
    ]["allOf"][0]["query"]
    lines = [line.strip() for line in query.strip().splitlines()]
    assert lines[:3] == [
        "requests",
        f"| where isempty(tostring(customDimensions.{REQUEST_ID}))",
        "| summarize total = sum(itemCount), failed = sumif(itemCount, toint(resultCode) >= 500)",
    ]
    assert "count(" not in query  # a row may stand for several sampled ones
