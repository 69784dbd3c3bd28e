"""Provider presets: the credential variables each well-known provider expects, and a cheap test query."""

# Variable names follow stackql's default auth (reference stackql.md §3): a mapping named after them
# needs no `--auth` override. Each probe is one small authenticated SELECT on a resource that needs
# no parameters, or only ones with a sensible default or that the person testing types in; the
# parameter values go into the query text, so they are checked against a strict pattern first.

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from stackql_inventory.services.errors import ErrorKind, UserFacingError


@dataclass(frozen=True)
class PresetVariable:
    """One credential env var a provider reads."""

    name: str
    description: str
    optional: bool = False


@dataclass(frozen=True)
class ProbeParam:
    """A WHERE parameter of the probe query (e.g. region), typed in on the page when it has no default."""

    name: str
    label: str
    default: str = ""
    hint: str = ""


@dataclass(frozen=True)
class Probe:
    """A small authenticated SELECT: `query` holds `{param}` placeholders; `noun` names what it counts."""

    query: str
    noun: str
    params: tuple[ProbeParam, ...] = ()


@dataclass(frozen=True)
class Preset:
    """What the Providers page offers for one provider."""

    provider: str
    title: str
    variables: tuple[PresetVariable, ...]
    probe: Probe
    notes: str = ""

    @property
    def required_variables(self) -> tuple[PresetVariable, ...]:
        return tuple(v for v in self.variables if not v.optional)

    @property
    def optional_variables(self) -> tuple[PresetVariable, ...]:
        return tuple(v for v in self.variables if v.optional)


_DATABRICKS_VARS = (
    PresetVariable("DATABRICKS_CLIENT_ID", "OAuth client id of the service principal."),
    PresetVariable("DATABRICKS_CLIENT_SECRET", "OAuth secret of the service principal."),
    PresetVariable("DATABRICKS_ACCOUNT_ID", "Databricks account id (used in the OAuth token URL)."),
)

PRESETS: dict[str, Preset] = {p.provider: p for p in (
    Preset(
        "aws", "Amazon Web Services",
        (PresetVariable("AWS_ACCESS_KEY_ID", "Access key id of an IAM user or role."),
         PresetVariable("AWS_SECRET_ACCESS_KEY", "Secret access key belonging to that key id."),
         PresetVariable("AWS_SESSION_TOKEN", "Session token, only for temporary credentials.", optional=True)),
        Probe("SELECT UserName FROM aws.iam.users WHERE region = '{region}'", "IAM users",
              (ProbeParam("region", "Region", "us-east-1", "IAM is global; any enabled region works."),)),
    ),
    Preset(
        "google", "Google Cloud",
        (PresetVariable("GOOGLE_CREDENTIALS", "The service-account key JSON itself (its contents, not a path)."),),
        Probe("SELECT name FROM google.storage.buckets WHERE project = '{project}'", "storage buckets",
              (ProbeParam("project", "Project id", "", "The project the service account can read."),)),
    ),
    Preset(
        "azure", "Microsoft Azure",
        (PresetVariable("AZURE_TENANT_ID", "Directory (tenant) id."),
         PresetVariable("AZURE_CLIENT_ID", "Application (client) id of the service principal."),
         PresetVariable("AZURE_CLIENT_SECRET", "Client secret of the service principal.")),
        Probe("SELECT name FROM azure.resources.resource_groups WHERE subscriptionId = '{subscriptionId}'",
              "resource groups",
              (ProbeParam("subscriptionId", "Subscription id", "", "A subscription the principal can read."),)),
    ),
    Preset(
        "databricks_workspace", "Databricks workspace",
        _DATABRICKS_VARS,
        Probe("SELECT cluster_name FROM databricks_workspace.compute.clusters "
              "WHERE deployment_name = '{deployment_name}'", "clusters",
              (ProbeParam("deployment_name", "Deployment name", "",
                          "The dbc-… part of the workspace URL."),)),
        notes="For a personal access token instead, map DATABRICKS_TOKEN and pass a bearer --auth.",
    ),
    Preset(
        "databricks_account", "Databricks account",
        _DATABRICKS_VARS,
        Probe("SELECT workspace_name FROM databricks_account.provisioning.workspaces "
              "WHERE account_id = '{account_id}'", "workspaces",
              (ProbeParam("account_id", "Account id", "", "The same id as DATABRICKS_ACCOUNT_ID."),)),
    ),
    Preset(
        "github", "GitHub",
        (PresetVariable("STACKQL_GITHUB_USERNAME", "GitHub user name."),
         PresetVariable("STACKQL_GITHUB_PASSWORD", "A personal access token of that user.")),
        Probe("SELECT login FROM github.orgs.orgs LIMIT 10", "organisations"),
    ),
    Preset(
        "okta", "Okta",
        (PresetVariable("OKTA_API_TOKEN", "An Okta API token (sent as 'SSWS <token>')."),),
        Probe("SELECT id FROM okta.user.users WHERE subdomain = '{subdomain}'", "users",
              (ProbeParam("subdomain", "Okta subdomain", "", "The <subdomain> of <subdomain>.okta.com."),)),
    ),
    Preset(
        "cloudflare", "Cloudflare",
        (PresetVariable("CLOUDFLARE_API_TOKEN", "A Cloudflare API token."),),
        Probe("SELECT name FROM cloudflare.zones.zones", "zones"),
    ),
)}

_PARAM_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/\-]{0,199}")
_PROVIDER = re.compile(r"[a-z][a-z0-9_]{0,63}")


def preset(provider: str) -> Preset | None:
    """The preset for `provider`, or None for providers without one (anything can still be mapped)."""
    return PRESETS.get(provider)


def default_secret_key(env_var: str) -> str:
    """The secret key a preset suggests for a variable: `AWS_ACCESS_KEY_ID` → `aws-access-key-id`."""
    return env_var.lower().replace("_", "-")


def services_query(provider: str) -> str:
    """`SHOW SERVICES IN <provider>` (the provider name is checked first: it goes into the query)."""
    if not _PROVIDER.fullmatch(provider or ""):
        raise UserFacingError(
            f"'{str(provider)[:64]}' is not a valid provider name: use lower-case letters, digits and '_' "
            "(e.g. aws, databricks_workspace).", ErrorKind.VALIDATION)
    return f"SHOW SERVICES IN {provider}"


def probe_query(p: Preset, params: Mapping[str, str]) -> str:
    """The preset's probe with `params` filled in (defaults for blanks); a missing or odd value is refused."""
    values: dict[str, str] = {}
    for param in p.probe.params:
        value = (params.get(param.name) or "").strip() or param.default
        if not value:
            raise UserFacingError(
                f"Enter the {param.label.lower()} to test {p.provider} ({param.hint.rstrip('.')}), then test again.",
                ErrorKind.VALIDATION)
        if not _PARAM_VALUE.fullmatch(value):
            raise UserFacingError(
                f"The {param.label.lower()} '{value[:64]}' is not valid: use letters, digits, '.', '-', '_', ':', "
                "'@' or '/', then test again.", ErrorKind.VALIDATION)
        values[param.name] = value
    return p.probe.query.format(**values)
