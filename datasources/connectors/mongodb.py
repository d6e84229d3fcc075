"""MongoDB connector (driver: pymongo, imported inside the methods).

A query is a dict, either a find:

    {"collection": "orders", "filter": {...}, "projection": {...},
     "sort": [["created", -1]], "limit": 100}

or an aggregation:

    {"collection": "orders", "pipeline": [{"$match": ...}, {"$group": ...}]}

Reads are kept read-only by refusing, anywhere in the query (nested dicts and lists
included), the operators that write (`$out`, `$merge`) or run server-side JavaScript
(`$where`, `$function`, `$accumulator`).
"""

from typing import Any

import pandas as pd

from datasources.connectors.base import (
    AccountRights,
    ConnectionSettings,
    Connector,
    ConnectorError,
    QueryRefused,
    check_write_allowed,
)

REFUSED_OPERATORS = frozenset({"$out", "$merge", "$where", "$function", "$accumulator"})
QUERY_KEYS = frozenset({"collection", "filter", "projection", "sort", "limit", "pipeline"})
# Privilege actions (connectionStatus showPrivileges) that change data or administer.
WRITE_ACTIONS = frozenset(
    {
        "insert",
        "update",
        "remove",
        "bypassDocumentValidation",
        "createCollection",
        "createIndex",
        "dropCollection",
        "dropDatabase",
        "dropIndex",
        "collMod",
        "compact",
        "convertToCapped",
        "renameCollectionSameDB",
        "reIndex",
        "createSearchIndexes",
        "dropSearchIndex",
        "updateSearchIndex",
        "enableSharding",
        "moveChunk",
        "splitChunk",
    }
)
ADMIN_ACTIONS = frozenset(
    {
        "anyAction",
        "shutdown",
        "setParameter",
        "fsync",
        "logRotate",
        "resync",
        "impersonate",
        "killop",
        "killAnySession",
        "replSetConfigure",
        "replSetStateChange",
        "addShard",
        "removeShard",
        "setFeatureCompatibilityVersion",
        "setDefaultRWConcern",
        "createUser",
        "dropUser",
        "updateUser",
        "createRole",
        "dropRole",
        "updateRole",
        "grantRole",
        "revokeRole",
        "changePassword",
        "changeCustomData",
        "setAuthenticationRestriction",
        "dropAllUsersFromDatabase",
        "dropAllRolesFromDatabase",
    }
)
BATCH_SIZE = 5_000
INSERT_CHUNK = 1_000
SAMPLE_SIZE = 100


def find_refused_operator(value: Any) -> str | None:
    """The first refused operator used as a key anywhere in value, else None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and key in REFUSED_OPERATORS:
                    return key
                stack.append(child)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def _bson_type(value: Any) -> str:
    from bson import ObjectId

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, ObjectId):
        return "objectId"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, (bytes, bytearray)):
        return "binData"
    import datetime

    if isinstance(value, datetime.datetime):
        return "date"
    return type(value).__name__


def _resource(resource: dict) -> str:
    if resource.get("anyResource"):
        return "any resource"
    if resource.get("cluster"):
        return "the cluster"
    database, collection = resource.get("db") or "*", resource.get("collection") or "*"
    return f"{database}.{collection}"


def status_rights(status: dict) -> AccountRights:
    """AccountRights from connectionStatus with showPrivileges: the actions, grouped by
    resource, that write (insert, dropCollection, ...) or administer (createUser,
    shutdown, anyAction ...). No user means access control could not be seen."""
    info = status.get("authInfo") or {}
    if not info.get("authenticatedUsers"):
        return AccountRights(
            unverified="no user is authenticated: if the server runs without access "
            "control, anyone connecting can write and administer it"
        )
    write, admin = [], []
    for privilege in info.get("authenticatedUserPrivileges") or []:
        actions = set(privilege.get("actions") or ())
        where = _resource(privilege.get("resource") or {})
        if changing := sorted(actions & (WRITE_ACTIONS | {"anyAction"})):
            write.append(f"{', '.join(changing[:3])}{' ...' * (len(changing) > 3)} on {where}")
        if administering := sorted(actions & ADMIN_ACTIONS):
            shown = ", ".join(administering[:3]) + " ..." * (len(administering) > 3)
            admin.append(f"{shown} on {where}")
    return AccountRights(write=tuple(write), admin=tuple(admin))


def _to_document(record: dict) -> dict:
    """A DataFrame row as a BSON-encodable document (NaN/NaT to None, numpy to Python)."""
    import numpy as np

    doc = {}
    for key, value in record.items():
        if isinstance(value, pd.Timestamp):
            value = None if pd.isna(value) else value.to_pydatetime()
        elif isinstance(value, np.generic):
            value = value.item()
        nan = isinstance(value, float) and value != value
        if nan or value is pd.NaT or value is pd.NA:
            value = None
        doc[str(key)] = value
    return doc


class MongoConnector(Connector):
    kind = "mongodb"
    default_port = 27017
    rights_risk = (
        "MongoDB has no read-only session: only the query check keeps extraction from using them"
    )
    read_only_advice = "Use an account with the read role only."
    options = {
        "auth_source": "Database holding the user's credentials (authSource); default: admin.",
        "tls": "true to connect with TLS.",
        "connect_timeout": "Seconds to wait for the server (serverSelectionTimeoutMS); 10.",
        "statement_timeout": "Seconds a read may run on the server (maxTimeMS); 300.",
    }

    def __init__(self, settings: ConnectionSettings, client: Any = None):
        super().__init__(settings)
        # Tests inject a mongomock client here; otherwise built on first use.
        self._client = client

    # -- connection -------------------------------------------------------------------

    @property
    def connect_timeout(self) -> float:
        return float(self.settings.options.get("connect_timeout", 10))

    @property
    def statement_timeout(self) -> float:
        return float(self.settings.options.get("statement_timeout", 300))

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def client(self):
        if self._client is None:
            import pymongo

            options = self.settings.options
            kwargs: dict[str, Any] = {
                "host": self.settings.host,
                "port": self.port,
                "tls": bool(options.get("tls", False)),
                "serverSelectionTimeoutMS": int(self.connect_timeout * 1000),
                "connectTimeoutMS": int(self.connect_timeout * 1000),
            }
            if self.settings.user:
                kwargs["username"] = self.settings.user
                kwargs["password"] = self.settings.secret
                kwargs["authSource"] = options.get("auth_source") or options.get(
                    "authSource", "admin"
                )
            try:
                self._client = pymongo.MongoClient(**kwargs)
            except Exception as exc:  # ConfigurationError, bad options
                raise ConnectorError(f"invalid MongoDB settings: {self._scrub(exc)}") from None
        return self._client

    def database(self):
        if not self.settings.database:
            raise ConnectorError("no database is set on this data source")
        return self.client()[self.settings.database]

    def _scrub(self, exc: BaseException | str) -> str:
        text = str(exc)
        if self.settings.secret:
            text = text.replace(self.settings.secret, "***")
        return text

    def _error(self, exc: Exception, doing: str) -> ConnectorError:
        """A ConnectorError the user can act on, from a pymongo exception."""
        from pymongo import errors

        if isinstance(exc, errors.ExecutionTimeout):
            return ConnectorError(f"{doing}: the query exceeded its time limit on the server")
        if isinstance(exc, errors.ServerSelectionTimeoutError):
            detail = self._scrub(exc).lower()
            if "refused" in detail or "name or service" in detail or "resolution" in detail:
                return ConnectorError(f"{doing}: MongoDB at {self.address} is unreachable")
            return ConnectorError(
                f"{doing}: timed out after {self.connect_timeout:g} s waiting for MongoDB "
                f"at {self.address}"
            )
        if isinstance(exc, errors.OperationFailure):
            if exc.code == 18 or "authentication failed" in str(exc).lower():
                return ConnectorError(
                    f"{doing}: authentication failed for user {self.settings.user!r}"
                )
            message = (exc.details or {}).get("errmsg") or str(exc)
            return ConnectorError(f"{doing}: {self._scrub(message)}")
        if isinstance(exc, errors.PyMongoError):
            return ConnectorError(f"{doing}: {self._scrub(exc)}")
        return ConnectorError(f"{doing}: {self._scrub(exc)}")

    # -- interface --------------------------------------------------------------------

    def test(self) -> str:
        from pymongo import errors

        try:
            info = self.client().server_info()
            self.database().command("ping")
        except (errors.PyMongoError, ConnectionError, OSError) as exc:
            raise self._error(exc, "connection test failed") from None
        return f"MongoDB {info.get('version', '?')} at {self.address}"

    def account_rights(self) -> AccountRights:
        """The authenticated user's privileges (connectionStatus, showPrivileges)."""
        from pymongo import errors

        try:
            status = self.database().command({"connectionStatus": 1, "showPrivileges": True})
        except (errors.PyMongoError, ConnectionError, OSError) as exc:
            raise self._error(exc, "could not read the account's privileges") from None
        return status_rights(status)

    def list_tables(self) -> list[str]:
        from pymongo import errors

        try:
            names = self.database().list_collection_names()
        except errors.PyMongoError as exc:
            raise self._error(exc, "could not list collections") from None
        return sorted(name for name in names if not name.startswith("system."))

    def columns(self, table: str) -> list[tuple[str, str]]:
        """Field names and types, sampled from the first 100 documents."""
        from pymongo import errors

        seen: dict[str, list[str]] = {}
        try:
            for doc in self.database()[table].find({}, limit=SAMPLE_SIZE):
                for key, value in doc.items():
                    types = seen.setdefault(key, [])
                    kind = _bson_type(value)
                    if kind not in types:
                        types.append(kind)
        except errors.PyMongoError as exc:
            raise self._error(exc, f"could not read collection {table!r}") from None
        result = []
        # _id first, as the server stores it (mongomock appends it last).
        for key, types in sorted(seen.items(), key=lambda item: item[0] != "_id"):
            real = [t for t in types if t != "null"] or ["null"]
            result.append((key, real[0] if len(real) == 1 else "|".join(real)))
        return result

    def preview(self, table_or_query: Any, n: int = 20) -> pd.DataFrame:
        query = (
            table_or_query if isinstance(table_or_query, dict) else {"collection": table_or_query}
        )
        return self.read(query, limit=n)

    def read(
        self, query: Any, limit: int | None = None, timeout: int | None = None
    ) -> pd.DataFrame:
        from pymongo import errors

        collection_name, plan = self._check_query(query)
        self.check_read_account()
        limits = [x for x in (plan.get("limit"), limit) if x is not None]
        effective_limit = min(limits) if limits else None
        max_time_ms = int((timeout if timeout is not None else self.statement_timeout) * 1000)
        if effective_limit == 0:  # pymongo takes limit(0) as "no limit"
            return pd.DataFrame()
        collection = self.database()[collection_name]
        try:
            if "pipeline" in plan:
                pipeline = list(plan["pipeline"])
                if effective_limit is not None:
                    pipeline.append({"$limit": effective_limit})
                cursor = collection.aggregate(pipeline, maxTimeMS=max_time_ms, batchSize=BATCH_SIZE)
            else:
                cursor = collection.find(
                    plan.get("filter") or {},
                    plan.get("projection") or None,
                    batch_size=BATCH_SIZE,
                )
                if plan.get("sort"):
                    cursor = cursor.sort([(field, direction) for field, direction in plan["sort"]])
                if effective_limit is not None:
                    cursor = cursor.limit(effective_limit)
                cursor = cursor.max_time_ms(max_time_ms)
            return self._frame(cursor)
        except errors.PyMongoError as exc:
            raise self._error(exc, f"query on {collection_name!r} failed") from None

    def write(self, frame: pd.DataFrame, table: str, mode: str = "fail") -> int:
        from pymongo import errors

        check_write_allowed(self.settings, mode)
        collection = self.database()[table]
        try:
            if mode == "fail" and collection.count_documents({}, limit=1):
                raise ConnectorError(
                    f"collection {table!r} already has documents: use mode append or replace"
                )
            if mode == "replace":
                collection.delete_many({})
            written = 0
            records = frame.to_dict("records")
            for start in range(0, len(records), INSERT_CHUNK):
                chunk = [_to_document(r) for r in records[start : start + INSERT_CHUNK]]
                result = collection.insert_many(chunk, ordered=True)
                written += len(result.inserted_ids)
        except errors.PyMongoError as exc:
            raise self._error(exc, f"write to {table!r} failed") from None
        return written

    # -- helpers ----------------------------------------------------------------------

    def _check_query(self, query: Any) -> tuple[str, dict]:
        if not isinstance(query, dict):
            raise QueryRefused(
                "a MongoDB query is a dict with a 'collection' and a filter or a pipeline"
            )
        unknown = set(query) - QUERY_KEYS
        if unknown:
            raise QueryRefused(f"unknown query keys: {', '.join(sorted(unknown))}")
        collection = query.get("collection")
        if not isinstance(collection, str) or not collection:
            raise QueryRefused("the query names no collection")
        if "pipeline" in query:
            if set(query) & {"filter", "projection", "sort"}:
                raise QueryRefused("a query has either a pipeline or filter/projection/sort")
            if not isinstance(query["pipeline"], list):
                raise QueryRefused("the pipeline must be a list of stages")
        for key in ("filter", "projection"):
            if query.get(key) is not None and not isinstance(query[key], dict):
                raise QueryRefused(f"the {key} must be a dict")
        sort = query.get("sort")
        valid_sort = sort is None or (
            isinstance(sort, list)
            and all(isinstance(s, (list, tuple)) and len(s) == 2 and s[1] in (1, -1) for s in sort)
        )
        if not valid_sort:
            raise QueryRefused("sort must be a list of [field, 1 or -1] pairs")
        limit = query.get("limit")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise QueryRefused("limit must be a non-negative integer")
        operator = find_refused_operator(
            [query.get("filter"), query.get("projection"), query.get("pipeline")]
        )
        if operator:
            raise QueryRefused(f"the operator {operator} is not allowed in a read query")
        return collection, query

    @staticmethod
    def _frame(cursor) -> pd.DataFrame:
        from bson import ObjectId

        frames: list[pd.DataFrame] = []
        batch: list[dict] = []
        for doc in cursor:
            if isinstance(doc.get("_id"), ObjectId):
                doc["_id"] = str(doc["_id"])
            batch.append(doc)
            if len(batch) >= BATCH_SIZE:
                frames.append(pd.DataFrame.from_records(batch))
                batch = []
        if batch or not frames:
            frames.append(pd.DataFrame.from_records(batch))
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)
