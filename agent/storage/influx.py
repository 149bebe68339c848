"""InfluxDB sinks: V1Writer (POST /write, InfluxDB 1.x), V2Writer (influxdb-client WriteApi), InfluxQL query()."""
from __future__ import annotations

import logging
from typing import Any, Protocol

import requests

log = logging.getLogger(__name__)

PRECISION = "ms"
# HTTP statuses that mean "these points are bad" (retrying cannot help): set them aside.
REJECT_STATUSES = frozenset({400, 422})
# Too large: split the batch; a single point this large is rejected.
TOO_LARGE_STATUS = 413


class SinkError(Exception):
    """A write failed. retryable: spool and try later; otherwise the points were refused (status 400/413/422)."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class QueryError(Exception):
    """An InfluxQL query failed (transport, HTTP or a statement error)."""


class Writer(Protocol):
    """A sink for line protocol (ms precision)."""

    def send(self, body: bytes) -> None:
        """Write newline-separated line protocol; raise SinkError on failure."""

    def close(self) -> None:
        """Release connections."""


def _classify(status: int, text: str, what: str) -> SinkError:
    text = (text or "").strip().replace("\n", " ")[:500]
    if status in REJECT_STATUSES or status == TOO_LARGE_STATUS:
        return SinkError(f"{what}: HTTP {status}: {text}", status, retryable=False)
    return SinkError(f"{what}: HTTP {status}: {text}", status, retryable=True)


class V1Writer:
    """InfluxDB 1.x: POST {url}/write?db=&precision=ms, creating the database when missing."""

    def __init__(self, url: str, database: str, username: str | None = None, password: str | None = None,
                 timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.username = username
        self.password = password
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy from the environment for the sink
        self._params = {"db": database, "precision": PRECISION}
        if username is not None:
            self._params |= {"u": username, "p": password or ""}
        self._db_checked = False

    def __repr__(self) -> str:
        return f"V1Writer({self.url!r}, db={self.database!r})"

    def ensure_database(self) -> None:
        """CREATE DATABASE (idempotent); raise SinkError when that fails."""
        params = {"q": f'CREATE DATABASE "{_quote_ident(self.database)}"'}
        if self.username is not None:
            params |= {"u": self.username, "p": self.password or ""}
        try:
            resp = self._session.post(f"{self.url}/query", params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise SinkError(f"create database {self.database!r} at {self.url}: {exc}") from None
        if resp.status_code != 200 or '"error"' in resp.text:
            raise SinkError(f"create database {self.database!r} at {self.url}: HTTP {resp.status_code}: "
                            f"{resp.text[:300]}", resp.status_code)
        log.info("influx: database %r ready at %s", self.database, self.url)
        self._db_checked = True

    def send(self, body: bytes) -> None:
        """POST the lines; on 404 "database not found" create it and retry once."""
        for attempt in (1, 2):
            try:
                resp = self._session.post(f"{self.url}/write", params=self._params, data=body,
                                          headers={"Content-Type": "text/plain; charset=utf-8"},
                                          timeout=self.timeout_s)
            except requests.RequestException as exc:
                raise SinkError(f"write to {self.url}: {type(exc).__name__}: {exc}") from None
            if resp.status_code == 204:
                return
            if resp.status_code == 404 and "database not found" in resp.text and attempt == 1:
                self.ensure_database()
                continue
            raise _classify(resp.status_code, resp.text, f"write to {self.url} db {self.database!r}")

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()


class V2Writer:
    """InfluxDB 2.x / 3.x / 1.8+: influxdb-client's synchronous WriteApi (url, token, org, bucket)."""

    def __init__(self, url: str, token: str, org: str, bucket: str, timeout_s: float = 5.0,
                 gzip: bool = False) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self._client = InfluxDBClient(url=self.url, token=token, org=org, timeout=int(timeout_s * 1000),
                                      enable_gzip=gzip)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def __repr__(self) -> str:
        return f"V2Writer({self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    def send(self, body: bytes) -> None:
        """Write the lines with precision ms; ApiException/urllib3 errors become SinkError."""
        import urllib3
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(bucket=self.bucket, org=self.org, record=body, write_precision=WritePrecision.MS)
        except ApiException as exc:
            raise _classify(exc.status or 0, exc.body if isinstance(exc.body, str) else str(exc.reason),
                            f"write to {self.url} bucket {self.bucket!r}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkError(f"write to {self.url}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        """Close the client."""
        self._write_api.close()
        self._client.close()


def make_writer(influx_cfg: Any) -> Writer:
    """A writer from an agent.core.config.InfluxConfig (api v1 or v2)."""
    if influx_cfg.api == "v2":
        return V2Writer(influx_cfg.url, influx_cfg.token, influx_cfg.org, influx_cfg.bucket,
                        influx_cfg.write_timeout_s, getattr(influx_cfg, "gzip", False))
    return V1Writer(influx_cfg.url, influx_cfg.database, influx_cfg.username, influx_cfg.password,
                    influx_cfg.write_timeout_s)


def _quote_ident(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def query(url: str, influxql: str, *, db: str | None = None, username: str | None = None,
          password: str | None = None, token: str | None = None, timeout_s: float = 10.0,
          epoch: str | None = "ms") -> list[dict[str, Any]]:
    """Run InfluxQL over /query (1.x, 2.x/3.x v1-compat with token) and return rows as dicts.

    Each row has the series columns plus "_measurement" and the series' GROUP BY tags.
    Times are epoch integers in `epoch` units (None: RFC3339 strings).
    """
    params: dict[str, str] = {"q": influxql}
    if db:
        params["db"] = db
    if epoch:
        params["epoch"] = epoch
    if username is not None:
        params |= {"u": username, "p": password or ""}
    headers = {"Authorization": f"Token {token}"} if token else {}
    try:
        with requests.Session() as s:
            s.trust_env = False
            resp = s.post(f"{url.rstrip('/')}/query", params=params, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise QueryError(f"query {url}: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 200:
        raise QueryError(f"query {url}: HTTP {resp.status_code}: {resp.text[:300]}")
    rows: list[dict[str, Any]] = []
    for result in resp.json().get("results", []):
        if "error" in result:
            raise QueryError(f"query {influxql!r}: {result['error']}")
        for series in result.get("series", []):
            base = {"_measurement": series.get("name"), **series.get("tags", {})}
            cols = series["columns"]
            for values in series.get("values", []):
                rows.append(base | dict(zip(cols, values)))
    return rows
