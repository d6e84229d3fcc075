"""Registering, testing and browsing data sources.

The pages, the admin, the commands and the API call these functions; the secret never
leaves them: messages that could quote it are scrubbed before they are returned.
"""

import time
from dataclasses import dataclass

import pandas as pd
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import capfirst

from datasources.connectors import connector_class
from datasources.connectors.base import AccountRights, ConnectorError
from datasources.models import DataSource
from datasources.services import pipelines_phrase, pipelines_referencing

SOURCE_FIELDS = ("name", "kind", "host", "port", "database", "user", "options", "allow_writes")
READ_ONLY_REPORT = "The account can only read: no write, server-file or admin rights found."
PREVIEW_ROWS = 20
# The outcome of the last test of each source, kept for the list page (not a model field:
# it is a hint, and losing it only means "not tested yet").
LAST_TEST_KEY = "datasources:last-test:{pk}"
LAST_TEST_SECONDS = 30 * 24 * 3600
# The kinds of option values the connectors understand (see each connector's `options`).
TIMEOUT_OPTIONS = {"connect_timeout", "statement_timeout"}
FLAG_OPTIONS = {"tls", "verify_ssl"}
TEXT_OPTIONS = {"ca", "charset", "auth_source"}
MAX_TIMEOUT_SECONDS = 86400
# How each SQL dialect quotes an identifier.
IDENTIFIER_QUOTES = {"mysql": "`", "postgresql": '"', "cratedb": '"'}


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
    stored_name = source.name if source.pk else None
    for field, value in values.items():
        setattr(source, field, value)
    if secret is not None:
        source.set_secret(secret)
    source.full_clean()
    if problem := rename_problem(stored_name, source.name):
        raise ValidationError({"name": problem})
    unknown_options = set(source.options) - set(connector_class(source.kind).options)
    if unknown_options:
        raise ValidationError(
            {"options": f"Unknown option(s): {', '.join(sorted(unknown_options))}."}
        )
    if problems := option_value_errors(source.options):
        raise ValidationError({"options": problems})
    with transaction.atomic():
        source.save()
    return source


def rename_problem(stored_name: str | None, new_name: str) -> str | None:
    """Why a source may not take a new name: steps naming it by its name would lose it.
    (Steps naming it by id follow it.)"""
    if stored_name is None or stored_name == new_name:
        return None
    users = pipelines_referencing({stored_name}, "sources")
    if not users:
        return None
    verb = "name" if len(users) > 1 else "names"
    return (
        f"{capfirst(pipelines_phrase(users))} {verb} this source {stored_name!r}: change "
        "their steps before renaming it."
    )


def option_value_errors(options: dict) -> list[str]:
    """What is wrong with the options' values, which the connectors read with int(),
    float() and bool(): a bad value would otherwise surface as a crash on the next test."""
    problems = []
    for name in sorted(options):
        value = options[name]
        if name in TIMEOUT_OPTIONS:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not 0 < value <= MAX_TIMEOUT_SECONDS:
                problems.append(
                    f"{name} must be a number of seconds, above 0 and at most "
                    f"{MAX_TIMEOUT_SECONDS}."
                )
        elif name in FLAG_OPTIONS and not isinstance(value, bool):
            problems.append(f"{name} must be true or false.")
        elif name in TEXT_OPTIONS and not (isinstance(value, str) and "\x00" not in value):
            problems.append(f"{name} must be a string with no NUL character.")
    return problems


def pipelines_using_source(source: DataSource) -> list[str]:
    """Names of the pipelines with a step that reads or writes this source (name or id).

    Each step type says which sources its params name: this app knows no step's params.
    """
    references = {source.name, source.pk}
    if not DataSource.objects.filter(name=str(source.pk)).exists():
        references.add(str(source.pk))  # digits name the id unless a source has that name
    return pipelines_referencing(references, "sources")


def delete_source(source: DataSource) -> None:
    """Delete the source; refused while a pipeline's step names it."""
    users = pipelines_using_source(source)
    if users:
        raise ValidationError(
            f"Data source {source.name} is used by {pipelines_phrase(users)}: change their "
            "steps before deleting it."
        )
    source.delete()


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


@dataclass(frozen=True)
class SourceTest:
    """A test of a data source: what `check_source` found, and how long it took."""

    check: SourceCheck
    seconds: float
    tested_at: object  # an aware datetime

    @property
    def took(self) -> str:
        """The time taken, as "35 ms" or "2.4 s": a connection's time is in milliseconds."""
        if self.seconds < 1:
            return f"{max(round(self.seconds * 1000), 1)} ms"
        return f"{self.seconds:.3g} s" if self.seconds < 100 else f"{round(self.seconds)} s"


def test_source(source: DataSource) -> SourceTest:
    """`check_source`, timed, its outcome recorded for the list of sources."""
    started = time.monotonic()
    check = _scrubbed_check(check_source(source), source)
    tested = SourceTest(check, time.monotonic() - started, timezone.now())
    cache.set(LAST_TEST_KEY.format(pk=source.pk), _test_record(tested), LAST_TEST_SECONDS)
    return tested


# pytest collects functions named test_* from modules it imports: this one is not a test.
test_source.__test__ = False


def last_tests(sources) -> dict[int, dict]:
    """The recorded last test of each source (ok, worrying, message, seconds, tested_at)."""
    keys = {LAST_TEST_KEY.format(pk=source.pk): source.pk for source in sources}
    found = cache.get_many(list(keys)) if keys else {}
    return {keys[key]: record for key, record in found.items()}


def _test_record(tested: SourceTest) -> dict:
    check = tested.check
    return {
        "ok": check.ok,
        "worrying": check.worrying,
        "refused": bool(check.refusal),
        "message": check.message,
        "warning": check.warning if check.worrying else "",
        "seconds": tested.seconds,
        "took": tested.took,
        "tested_at": tested.tested_at,
    }


def _scrubbed_check(check: SourceCheck, source: DataSource) -> SourceCheck:
    """The check with the secret blanked out of its texts, should a driver echo it."""
    secret = source.get_secret()
    if not secret:
        return check
    return SourceCheck(
        ok=check.ok,
        message=scrub_secret(check.message, secret),
        rights=check.rights,
        warning=scrub_secret(check.warning, secret),
        worrying=check.worrying,
        refusal=scrub_secret(check.refusal, secret),
    )


def scrub_secret(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret and text else text


class SourceUnreadable(Exception):
    """The source could not be browsed: the message says why, never with the secret."""


class TableMissing(SourceUnreadable):
    """The source has no such table (collection), or one without columns."""


@dataclass(frozen=True)
class TablePreview:
    """A table or collection of a source: its columns and types, and its first rows."""

    table: str
    columns: list[tuple[str, str]]
    rows: pd.DataFrame

    @property
    def header(self) -> list[str]:
        return [str(name) for name in self.rows.columns]

    def cells(self) -> list[list[str | None]]:
        """The rows as text, None for a missing value (NULL, NaN, NaT)."""
        frame = self.rows.astype(object).where(self.rows.notna(), None)
        return [
            [None if value is None else str(value) for value in row]
            for row in frame.itertuples(index=False, name=None)
        ]


def source_tables(source: DataSource) -> list[str]:
    """The tables (collections) of the source, through its read-only connector."""
    return _browsing(source, lambda connector: connector.list_tables())


def table_preview(source: DataSource, table: str, rows: int = PREVIEW_ROWS) -> TablePreview:
    """The columns and the first rows of a table, read as the extraction steps read."""

    def read(connector):
        columns = connector.columns(table)
        if not columns:
            raise ConnectorError(f"{table!r} does not exist or is empty")
        return TablePreview(table, columns, connector.preview(table, rows))

    return _browsing(source, read)


def listed_table_preview(source: DataSource, table: str) -> TablePreview:
    """`table_preview` of a table the source lists; TableMissing for any other name."""
    if table not in source_tables(source):
        missing = f"{source.name} has no table {table!r}"
        raise TableMissing(scrub_secret(missing, source.get_secret()))
    return table_preview(source, table)


def _browsing(source: DataSource, action):
    try:
        return action(source.connector())
    except ConnectorError as exc:
        raise SourceUnreadable(scrub_secret(str(exc), source.get_secret())) from None


def table_step(source: DataSource, table: str) -> dict:
    """The first step of a pipeline that reads a whole table (collection) of the source."""
    if source.kind == "mongodb":
        params = {"datasource": source.name, "collection": table}
        return {"type": "mongo", "name": f"read {table}"[:100], "params": params}
    quote = IDENTIFIER_QUOTES[source.kind]
    quoted = quote + table.replace(quote, quote * 2) + quote
    params = {"datasource": source.name, "query": f"SELECT * FROM {quoted}"}
    return {"type": "sql", "name": f"read {table}"[:100], "params": params}


def pipeline_from_table(source: DataSource, table: str, user=None):
    """A new pipeline named "<source>-<table>" ("-2", ... when taken) reading the table."""
    from pipelines import services

    if table not in source_tables(source):
        raise SourceUnreadable(f"{source.name} has no table {table!r}")
    owner = user if user is not None and user.is_authenticated else None
    return services.create_pipeline(
        free_pipeline_name(f"{source.name}-{table}"),
        description=f"Reads {table} from the data source {source.name}.",
        owner=owner,
        steps=[table_step(source, table)],
        user=user,
        summary=f"created from table {table} of {source.name}",
    )


def free_pipeline_name(name: str) -> str:
    """`name`, or the first of "<name>-2", "<name>-3", ... no pipeline has."""
    from pipelines.models import Pipeline

    length = Pipeline._meta.get_field("name").max_length
    name = name[:length]
    taken = set(
        Pipeline.objects.filter(name__startswith=name[: length - 6]).values_list("name", flat=True)
    )
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        suffix = f"-{number}"
        candidate = name[: length - len(suffix)] + suffix
    return candidate
