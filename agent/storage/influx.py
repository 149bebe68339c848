"""InfluxDB sinks: V1Writer (POST /write, InfluxDB 1.x), V2Writer (influxdb-client WriteApi), InfluxQL query().

TLS for both: a CA file or directory (`ca_file`), a client certificate and key, or (loudly logged)
no verification at all.
"""
from __future__ import annotations

import logging
import re
import ssl
import warnings
from typing import Any, Protocol

import requests
import urllib3

from agent.secretfile import SecretFileError, read_secret
from agent.tls import TLSSettings, client as tls_client

log = logging.getLogger(__name__)

PRECISION = "ms"
# HTTP statuses that mean "these points are bad" (retrying cannot help): set them aside.
REJECT_STATUSES = frozenset({400, 422})
# Too large: split the batch; a single point this large is rejected.
TOO_LARGE_STATUS = 413
# A retention partial write: the points older than the retention policy were dropped, the rest of the batch
# was stored. 1.x: 400 "partial write: points beyond retention policy dropped=N"; 2.0.x: 500 "...unexpected error
# writing points to database: partial write: points beyond retention policy dropped=N" (influxdata/influxdb#20359);
# 2.x: 422 "...partial write: dropped N points outside retention policy of duration ...".
RETENTION_STATUSES = frozenset({400, 422, 500})
_RETENTION_RES = (re.compile(r"points beyond retention policy dropped=(\d+)"),
                  re.compile(r"dropped (\d+) points outside retention policy"))


def retention_dropped(status: int, text: str) -> int | None:
    """N when (status, body) is a retention partial write (see RETENTION_STATUSES), else None."""
    if status not in RETENTION_STATUSES:
        return None
    for regex in _RETENTION_RES:
        if m := regex.search(text or ""):
            return int(m.group(1))
    return None


class SinkError(Exception):
    """A write failed. retryable: spool and try later; otherwise the points were refused (status 400/413/422).

    kind: "tls" (certificate/handshake), "auth" (401/403), "http" (another status), "transport" (connect, timeout).
    """

    def __init__(self, message: str, status: int | None = None, retryable: bool = True, kind: str = "",
                 retention_dropped: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.kind = kind or ("auth" if status in AUTH_STATUSES else "http" if status else "transport")
        # a retention partial write: this many points were dropped as too old, the rest of the batch was stored
        self.retention_dropped = retention_dropped


AUTH_STATUSES = frozenset({401, 403})


# The one TLS type (agent/tls.py): the config checks it, it builds the SSLContext, requests' verify/cert come from it.
TLSOptions = TLSSettings


def _tls_of(influx_cfg: Any) -> TLSSettings:
    """The client-side agent.tls.TLSSettings of an [influxdb] section (InfluxConfig.tls(), or its keys)."""
    return tls_client(getattr(influx_cfg, "ca_file", None), getattr(influx_cfg, "client_cert", None),
                      getattr(influx_cfg, "client_key", None), bool(getattr(influx_cfg, "insecure_skip_verify", False)))


def tls_from_config(influx_cfg: Any) -> TLSSettings:
    """agent.tls.TLSSettings from an agent.core.config.InfluxConfig; logs a WARNING when verification is off."""
    tls = _tls_of(influx_cfg)
    if tls.insecure_skip_verify:
        log.warning("influx: influxdb.insecure_skip_verify = true: the certificate of %s is NOT verified; anyone on "
                    "the path can read and change what the agent writes. Use influxdb.ca_file instead.",
                    influx_cfg.url)
        # our own WARNING above says it once per start; urllib3's would repeat it for every request
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    return tls


def read_password(path: str) -> str:
    """The password in a file (agent.secretfile.read_secret); raise SinkError when unreadable or empty."""
    try:
        return read_secret(path)
    except SecretFileError as exc:
        raise SinkError(f"influxdb.password_file: {exc}", retryable=False) from None


def transport_reason(exc: BaseException) -> str:
    """A short reason for a failed HTTP exchange, for one line a person reads: no URL, no query string (an InfluxQL
    statement or a password may be in it), no nested exception reprs. "connection refused", "timed out after ..."."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    for args in (getattr(e, "args", ()) for e in chain):
        text += " " + " ".join(map(repr, args))
    if isinstance(exc, requests.exceptions.ConnectTimeout) or "ConnectTimeout" in text:
        return "no connection within the timeout (timed out)"
    if isinstance(exc, (requests.exceptions.ReadTimeout, TimeoutError)) or "timed out" in text:
        return "no answer within the timeout (timed out)"
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return "connection refused (nothing listens there)"
    if "Name or service not known" in text or "nodename nor servname" in text or "NameResolutionError" in text \
            or "Temporary failure in name resolution" in text:
        return "the host name does not resolve"
    if "No route to host" in text or "Network is unreachable" in text:
        return "no route to the host"
    if "No such file or directory" in text or "FileNotFoundError" in text:
        return "the socket does not exist"
    if "Permission denied" in text or "PermissionError" in text:
        return "permission denied (may this user use it?)"
    if "JSONDecodeError" in text or "Expecting value" in text or "Expecting property name" in text:
        return "the answer is not the JSON expected (is it the right server and port?)"
    if "BadStatusLine" in text or "RemoteDisconnected" in text or "Connection aborted" in text \
            or "Connection reset" in text:
        return "the connection was closed without an HTTP answer (is it the right port?)"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    first = re.sub(r"\?\S*", "", first) if "?" in first else first
    return f"{type(exc).__name__}" + (f": {first[:160]}" if first else "")


def _transport_error(exc: Exception, url: str, tls: TLSSettings | None) -> SinkError:
    """A requests/urllib3 exception as a SinkError; TLS failures name the config keys to check."""
    text = f"{type(exc).__name__}: {exc}"
    is_tls = isinstance(exc, (requests.exceptions.SSLError, ssl.SSLError, urllib3.exceptions.SSLError)) or (
        "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text)
    if is_tls:
        ca = tls.ca_file if tls and tls.ca_file else "the system CAs"
        reason = "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else "TLS handshake failed"
        return SinkError(f"TLS to {url}: {reason} (verifying against {ca}; check influxdb.ca_file, "
                         f"influxdb.client_cert/client_key): {text[:300]}", kind="tls")
    return SinkError(f"write to {url}: {transport_reason(exc)}", kind="transport")


class QueryError(Exception):
    """An InfluxQL query failed (transport, HTTP or a statement error)."""


class Writer(Protocol):
    """A sink for line protocol (ms precision)."""

    def send(self, body: bytes) -> None:
        """Write newline-separated line protocol; raise SinkError on failure."""

    def close(self) -> None:
        """Release connections."""

    def retention_s(self) -> float | None:
        """The retention period of where points go, in seconds (0: infinite), or None when InfluxDB will not tell
        (no read permission, an unexpected answer); raises SinkError when InfluxDB cannot be reached."""


def parse_go_duration_s(text: str) -> float:
    """Seconds of a Go duration as InfluxDB prints it ("168h0m0s", "1h0m0s", "30m0s", "0s"); ValueError if not."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", text or "")
    if not text or parts is None:
        raise ValueError(f"not a duration: {text!r}")
    h, m, sec = (float(g) if g else 0.0 for g in parts.groups())
    return h * 3600 + m * 60 + sec


def _classify(status: int, text: str, what: str) -> SinkError:
    """Retention partial write (400/422/500 naming it), 400/422 refused, 413 split, 401/403 credentials
    (retryable: fixing them delivers), 5xx and others retryable."""
    text = (text or "").strip().replace("\n", " ")[:500]
    dropped = retention_dropped(status, text)
    if dropped is not None:
        return SinkError(f"{what}: HTTP {status}: {text}", status, retryable=False, kind="retention",
                         retention_dropped=dropped)
    if status in REJECT_STATUSES or status == TOO_LARGE_STATUS:
        return SinkError(f"{what}: HTTP {status}: {text}", status, retryable=False)
    if status in AUTH_STATUSES:
        return SinkError(f"{what}: HTTP {status} (credentials refused): {text}", status, retryable=True, kind="auth")
    return SinkError(f"{what}: HTTP {status}: {text}", status, retryable=True)


class V1Writer:
    """InfluxDB 1.x: POST {url}/write?db=&precision=ms, creating the database when missing."""

    def __init__(self, url: str, database: str, username: str | None = None, password: str | None = None,
                 timeout_s: float = 5.0, tls: TLSSettings | None = None) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.username = username
        self.password = password
        self.timeout_s = timeout_s
        self.tls = tls or TLSSettings()
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy from the environment for the sink
        self._session.verify = self.tls.requests_verify
        self._session.cert = self.tls.requests_cert
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
            raise _transport_error(exc, self.url, self.tls) from None
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
                raise _transport_error(exc, self.url, self.tls) from None
            if resp.status_code == 204:
                return
            if resp.status_code == 404 and "database not found" in resp.text and attempt == 1:
                self.ensure_database()
                continue
            raise _classify(resp.status_code, resp.text, f"write to {self.url} db {self.database!r}")

    def retention_s(self) -> float | None:
        """The default retention policy's duration (SHOW RETENTION POLICIES; 0: infinite); None when refused (a
        user without the privilege) or not understood; SinkError when InfluxDB cannot be reached."""
        params = {"q": f'SHOW RETENTION POLICIES ON "{_quote_ident(self.database)}"'}
        if self.username is not None:
            params |= {"u": self.username, "p": self.password or ""}
        try:
            resp = self._session.post(f"{self.url}/query", params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise _transport_error(exc, self.url, self.tls) from None
        try:
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}: {resp.text[:200]}")
            result = (resp.json().get("results") or [{}])[0]
            if "error" in result:
                raise ValueError(result["error"])
            durations = [parse_go_duration_s(str(dict(zip(series["columns"], row, strict=False)).get("duration")))
                         for series in result.get("series", []) for row in series.get("values", [])
                         if dict(zip(series["columns"], row, strict=False)).get("default")]
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            log.info("influx: cannot learn the retention of %r at %s (%s)", self.database, self.url, exc)
            return None
        return durations[0] if durations else None

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()


class V2Writer:
    """InfluxDB 2.x / 3.x / 1.8+: influxdb-client's synchronous WriteApi (url, token, org, bucket)."""

    def __init__(self, url: str, token: str, org: str, bucket: str, timeout_s: float = 5.0,
                 gzip: bool = False, tls: TLSSettings | None = None) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self.tls = tls or TLSSettings()
        extra: dict[str, Any] = {}
        if self.url.startswith("https:"):
            # one SSLContext carries CA file or directory and the client certificate (influxdb-client >= 1.37)
            extra = {"ssl_context": self.tls.context(), "verify_ssl": not self.tls.insecure_skip_verify}
        self._client = InfluxDBClient(url=self.url, token=token, org=org, timeout=int(timeout_s * 1000),
                                      enable_gzip=gzip, **extra)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def __repr__(self) -> str:
        return f"V2Writer({self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    def send(self, body: bytes) -> None:
        """Write the lines with precision ms; ApiException/urllib3 errors become SinkError."""
        import urllib3
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(bucket=self.bucket, org=self.org, record=body,
                                  # influxdb-client annotates WritePrecision; its own constants are str ("ms")
                                  write_precision=WritePrecision.MS)  # type: ignore[arg-type]
        except ApiException as exc:
            if not exc.status:                      # no HTTP answer: influxdb-client wraps the transport error
                raise _transport_error(Exception(str(exc.reason)), self.url, self.tls) from None
            text = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
            raise _classify(exc.status or 0, text if isinstance(text, str) else str(exc.reason),
                            f"write to {self.url} bucket {self.bucket!r}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transport_error(exc, self.url, self.tls) from None

    def retention_s(self) -> float | None:
        """The bucket's expiry (the buckets API: retentionRules everySeconds; 0: infinite), None when it cannot
        be read (a write-only token sees no bucket)."""
        import urllib3
        from influxdb_client.rest import ApiException

        try:
            bucket = self._client.buckets_api().find_bucket_by_name(self.bucket)
        except ApiException as exc:
            if not exc.status:
                raise _transport_error(Exception(str(exc.reason)), self.url, self.tls) from None
            log.info("influx: cannot learn the retention of bucket %r at %s (HTTP %s)", self.bucket, self.url,
                     exc.status)
            return None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transport_error(exc, self.url, self.tls) from None
        except (ValueError, TypeError, AttributeError) as exc:   # an answer the client could not read
            log.info("influx: cannot learn the retention of bucket %r at %s (%s)", self.bucket, self.url, exc)
            return None
        if bucket is None:
            log.info("influx: bucket %r not visible to this token at %s: its retention is unknown", self.bucket,
                     self.url)
            return None
        rules = [r for r in (bucket.retention_rules or []) if getattr(r, "type", "expire") == "expire"]
        return float(rules[0].every_seconds or 0) if rules else 0.0

    def close(self) -> None:
        """Close the client."""
        self._write_api.close()
        self._client.close()


def credentials(influx_cfg: Any) -> dict[str, str | None]:
    """username/password (v1; the password read from password_file when given) or token (v2), for query()."""
    if influx_cfg.api == "v2":
        return {"token": influx_cfg.token}
    password = influx_cfg.password
    if getattr(influx_cfg, "password_file", None):
        password = read_password(influx_cfg.password_file)
    if influx_cfg.username is None:
        return {}
    return {"username": influx_cfg.username, "password": password}


def query_kwargs(influx_cfg: Any) -> dict[str, Any]:
    """Keyword arguments of query() for this [influxdb] section: credentials, TLS and timeout."""
    tls = _tls_of(influx_cfg)
    return credentials(influx_cfg) | {"tls": tls, "timeout_s": influx_cfg.write_timeout_s}


def make_writer(influx_cfg: Any) -> Writer:
    """A writer from an agent.core.config.InfluxConfig (api v1 or v2); raises SinkError for an unreadable password_file."""
    tls = tls_from_config(influx_cfg)
    if influx_cfg.api == "v2":
        return V2Writer(influx_cfg.url, influx_cfg.token, influx_cfg.org, influx_cfg.bucket,
                        influx_cfg.write_timeout_s, getattr(influx_cfg, "gzip", False), tls=tls)
    creds = credentials(influx_cfg)
    return V1Writer(influx_cfg.url, influx_cfg.database, creds.get("username"), creds.get("password"),
                    influx_cfg.write_timeout_s, tls=tls)


def _quote_ident(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def query(url: str, influxql: str, *, db: str | None = None, username: str | None = None,
          password: str | None = None, token: str | None = None, timeout_s: float = 10.0,
          epoch: str | None = "ms", tls: TLSSettings | None = None) -> list[dict[str, Any]]:
    """Run InfluxQL over /query (1.x, 2.x/3.x v1-compat with token) and return rows as dicts.

    Each row has the series columns plus "_measurement" and the series' GROUP BY tags.
    Times are epoch integers in `epoch` units (None: RFC3339 strings). `tls`: CA/client certificate
    for an https:// url. Raises QueryError.
    """
    tls = tls or TLSSettings()
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
            s.verify = tls.requests_verify
            s.cert = tls.requests_cert
            resp = s.post(f"{url.rstrip('/')}/query", params=params, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        if isinstance(exc, requests.exceptions.SSLError):
            raise QueryError(f"query {url}: {_transport_error(exc, url, tls)}") from None
        raise QueryError(f"query {url}: {transport_reason(exc)}") from None
    if resp.status_code != 200:
        body = " ".join(resp.text.split())[:200]
        raise QueryError(f"query {url}: HTTP {resp.status_code}" + (f": {body}" if body else ""))
    rows: list[dict[str, Any]] = []
    # The answer's shape is InfluxDB's (docs.influxdata.com, /query response); anything else is not InfluxDB.
    try:
        for result in resp.json().get("results", []):
            if "error" in result:
                raise QueryError(f"query {url}: InfluxDB refused the statement: {result['error']}")
            for series in result.get("series", []):
                base = {"_measurement": series.get("name"), **series.get("tags", {})}
                cols = series["columns"]
                for values in series.get("values", []):
                    rows.append(base | dict(zip(cols, values, strict=False)))
    except (ValueError, AttributeError, KeyError, TypeError):   # JSON decode errors are ValueErrors
        raise QueryError(f"query {url}: the answer is not InfluxDB's /query JSON (is the url InfluxDB's?)") from None
    return rows
