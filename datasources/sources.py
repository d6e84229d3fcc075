"""Registering and testing data sources."""

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from datasources.connectors import connector_class
from datasources.connectors.base import AccountRights, ConnectorError
from datasources.models import DataSource

SOURCE_FIELDS = ("name", "kind", "host", "port", "database", "user", "options", "allow_writes")
READ_ONLY_REPORT = "The account can only read: no write, server-file or admin rights found."


@dataclass(frozen=True)
class SourceCheck:
    """What testing a data source found: the server, and what its account may do."""

    ok: bool
    # The server ("MariaDB 10.11.6, database shop as reader@%"), or what went wrong.
    message: str
    rights: AccountRights | None = None
    # Rights beyond reading, stated plainly; "" when the account can only read.
    warning: str = ""
    # Whether the warning is one: rights the source does not need, or unverified ones.
    worrying: bool = False
    # Why extraction is refused (MLOPS_REQUIRE_READONLY_ACCOUNTS on), or "".
    refusal: str = ""

    @property
    def report(self) -> str:
        """The message and, once connected, what the account may do."""
        if not self.ok:
            return self.message
        parts = [self.message + ".", self.warning or READ_ONLY_REPORT]
        if self.refusal:
            parts.append(self.refusal[0].upper() + self.refusal[1:] + ".")
        return " ".join(parts)


def save_source(
    values: dict, secret: str | None = None, source: DataSource | None = None
) -> DataSource:
    """Create or update a data source; the secret changes only when one is given."""
    source = source or DataSource()
    unknown = set(values) - set(SOURCE_FIELDS)
    if unknown:
        raise ValidationError({field: "Not a data source field." for field in unknown})
    for field, value in values.items():
        setattr(source, field, value)
    if secret is not None:
        source.set_secret(secret)
    source.full_clean()
    unknown_options = set(source.options) - set(connector_class(source.kind).options)
    if unknown_options:
        raise ValidationError(
            {"options": f"Unknown option(s): {', '.join(sorted(unknown_options))}."}
        )
    with transaction.atomic():
        source.save()
    return source


def check_source(source: DataSource) -> SourceCheck:
    """Connect, read, and ask the server what the account may do besides reading.

    The rights found also prime this process's cache, which extraction consults when
    MLOPS_REQUIRE_READONLY_ACCOUNTS is on (other processes ask the server themselves).
    """
    connector = source.connector()
    try:
        described = connector.test()
    except ConnectorError as exc:
        return SourceCheck(ok=False, message=str(exc))
    try:
        rights = connector.account_rights()
    except ConnectorError as exc:
        rights = AccountRights(unverified=str(exc))
    else:
        connector.remember_account_rights(rights)
    warning = rights.warning(
        connector.rights_risk, connector.read_only_advice, allow_writes=source.allow_writes
    )
    worrying = bool(rights.summary(skip_write=source.allow_writes) or rights.unverified)
    refusal = ""
    if settings.MLOPS_REQUIRE_READONLY_ACCOUNTS:
        refusal = rights.refusal(allow_writes=source.allow_writes)
    return SourceCheck(
        ok=True,
        message=described,
        rights=rights,
        warning=warning,
        worrying=worrying,
        refusal=refusal,
    )
