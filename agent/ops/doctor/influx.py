"""Topic InfluxDB: reachable (/ping), credentials accepted, database (v1) or bucket (v2) present or created."""
from __future__ import annotations

from typing import Any

from agent.ops.doctor.results import CheckResult, cfg_value, failed, passed
from agent.storage.read import quote_ident


def _influx_fix_url(url: str) -> str:
    return (f"check [influxdb] url = {url!r} (is InfluxDB running and reachable from here? "
            f"`curl -i {url.rstrip('/')}/ping` should answer 204)")


def check_influx(influx: Any, session: Any = None, create_database: bool = False,
                 timeout_s: float = 5.0) -> list[CheckResult]:
    """InfluxDB reachable (/ping), credentials accepted, database (v1) or bucket (v2) present."""
    import requests

    from agent.storage.influx import transport_reason

    if session is None:
        session = requests.Session()
        session.trust_env = False  # like the agent's writer: no proxy from the environment
    url = str(cfg_value(influx, "url", default="http://127.0.0.1:8086")).rstrip("/")
    api = cfg_value(influx, "api", default="v1")
    results = []
    try:
        resp = session.get(f"{url}/ping", timeout=timeout_s)
    except requests.RequestException as exc:
        return [failed("influxdb reachable", f"{url}/ping: {transport_reason(exc)}", _influx_fix_url(url))]
    if resp.status_code not in (200, 204):
        return [failed("influxdb reachable", f"{url}/ping answered HTTP {resp.status_code}", _influx_fix_url(url))]
    server = resp.headers.get("X-Influxdb-Version", "unknown version")
    results.append(passed("influxdb reachable", f"{url} answers /ping ({server})"))
    if api == "v2":
        results += _check_influx_v2(session, url, influx, create_database, timeout_s)
    else:
        results += _check_influx_v1(session, url, influx, create_database, timeout_s)
    return results


def _v1_auth(influx: Any) -> dict:
    user = cfg_value(influx, "username")
    password = cfg_value(influx, "password")
    if user and cfg_value(influx, "password_file"):
        from agent.storage.influx import SinkError, read_password

        try:
            password = read_password(cfg_value(influx, "password_file"))
        except SinkError:
            password = None   # check-config names the unreadable file; the auth check then fails plainly
    return {"u": user, "p": password or ""} if user else {}


def _check_influx_v1(session, url, influx, create, timeout_s) -> list[CheckResult]:
    import requests

    from agent.storage.influx import transport_reason

    database = cfg_value(influx, "database", default="vobox")
    params = {"q": "SHOW DATABASES", **_v1_auth(influx)}
    try:
        resp = session.get(f"{url}/query", params=params, timeout=timeout_s)
    except requests.RequestException as exc:
        return [failed("influxdb auth", f"SHOW DATABASES: {transport_reason(exc)}", _influx_fix_url(url))]
    if resp.status_code in (401, 403):
        return [failed("influxdb auth", f"SHOW DATABASES refused: HTTP {resp.status_code} {resp.text[:200]}",
                      "set [influxdb] username and password of a user with WRITE (and READ for status/events) "
                      f"on {database!r}")]
    if resp.status_code != 200:
        return [failed("influxdb auth", f"SHOW DATABASES: HTTP {resp.status_code} {resp.text[:200]}")]
    out = [passed("influxdb auth", "query accepted" + (f" as {cfg_value(influx, 'username')!r}" if _v1_auth(influx) else
                                                       " (no credentials configured)"))]
    names: set[str] = set()
    try:   # InfluxDB's /query answer (results, series, values); anything else is not InfluxDB
        for res in resp.json().get("results", []):
            for series in res.get("series", []) or []:
                names.update(str(row[0]) for row in series.get("values", []) or [])
    except (ValueError, AttributeError, TypeError, KeyError, IndexError):
        return [failed("influxdb auth", f"{url}/query: the answer to SHOW DATABASES is not InfluxDB's JSON",
                       _influx_fix_url(url))]
    if database in names:
        out.append(passed("influxdb database", f"database {database!r} exists"))
        return out
    if not create:
        out.append(failed("influxdb database", f"database {database!r} does not exist (have: {sorted(names)})",
                         f"run `vobox-agent doctor -c FILE --create-database`, or "
                         f"`influx -execute 'CREATE DATABASE \"{database}\"'`"))
        return out
    try:
        resp = session.post(f"{url}/query", params={"q": f"CREATE DATABASE {quote_ident(database)}",
                                                     **_v1_auth(influx)}, timeout=timeout_s)
    except requests.RequestException as exc:
        out.append(failed("influxdb database", f"CREATE DATABASE {database!r}: {transport_reason(exc)}",
                          _influx_fix_url(url)))
        return out
    try:
        body = resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else {}
        errors = [r["error"] for r in body.get("results", []) if "error" in r] + (
            [body["error"]] if "error" in body else [])
    except (ValueError, AttributeError, TypeError, KeyError):
        body, errors = {}, ["the answer is not InfluxDB's JSON"]
    if resp.status_code != 200 or errors:
        out.append(failed("influxdb database", f"CREATE DATABASE {database!r} failed: HTTP {resp.status_code} "
                                              f"{errors or resp.text[:200]}",
                         "create it as an admin user"))
    else:
        out.append(passed("influxdb database", f"database {database!r} created"))
    return out


def _check_influx_v2(session, url, influx, create, timeout_s) -> list[CheckResult]:
    import requests

    from agent.storage.influx import transport_reason

    bucket = cfg_value(influx, "bucket", default="vobox")
    org = cfg_value(influx, "org")
    headers = {"Authorization": f"Token {cfg_value(influx, 'token') or ''}"}
    try:
        resp = session.get(f"{url}/api/v2/buckets", params={"name": bucket, **({"org": org} if org else {})},
                           headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        return [failed("influxdb auth", f"GET /api/v2/buckets: {transport_reason(exc)}", _influx_fix_url(url))]
    if resp.status_code in (401, 403):
        return [failed("influxdb auth", f"token refused: HTTP {resp.status_code} {resp.text[:200]}",
                      f"set [influxdb] token to an API token with write access to bucket {bucket!r} in org {org!r}")]
    if resp.status_code == 404 and "org" in resp.text.lower():
        return [passed("influxdb auth", "token accepted"),
                failed("influxdb bucket", f"organization {org!r} not found: {resp.text[:200]}",
                      "set [influxdb] org to your organization's name")]
    if resp.status_code != 200:
        return [failed("influxdb auth", f"GET /api/v2/buckets: HTTP {resp.status_code} {resp.text[:200]}",
                      "api = \"v2\" needs InfluxDB 1.8+, 2.x or 3.x; for 1.x before 1.8 use api = \"v1\"")]
    out = [passed("influxdb auth", "token accepted")]
    try:   # InfluxDB's /api/v2/buckets answer; anything else is not InfluxDB
        buckets = [b.get("name") for b in resp.json().get("buckets", [])]
    except (ValueError, AttributeError, TypeError):
        return [failed("influxdb auth", f"{url}/api/v2/buckets: the answer is not InfluxDB's JSON",
                       _influx_fix_url(url))]
    if bucket in buckets:
        out.append(passed("influxdb bucket", f"bucket {bucket!r} exists"))
        return out
    if not create:
        out.append(failed("influxdb bucket", f"bucket {bucket!r} not found in org {org!r}",
                         f"run `vobox-agent doctor -c FILE --create-database`, or "
                         f"`influx bucket create --name {bucket} --org {org}`"))
        return out
    try:
        orgs = session.get(f"{url}/api/v2/orgs", params={"org": org}, headers=headers, timeout=timeout_s)
        org_ids = [o.get("id") for o in (orgs.json().get("orgs", []) if orgs.status_code == 200 else [])]
    except requests.RequestException as exc:
        out.append(failed("influxdb bucket", f"GET /api/v2/orgs: {transport_reason(exc)}", _influx_fix_url(url)))
        return out
    except (ValueError, AttributeError, TypeError):
        out.append(failed("influxdb bucket", f"{url}/api/v2/orgs: the answer is not InfluxDB's JSON"))
        return out
    if not org_ids:
        out.append(failed("influxdb bucket", f"cannot find the id of org {org!r}: HTTP {orgs.status_code}"))
        return out
    try:
        resp = session.post(f"{url}/api/v2/buckets", json={"orgID": org_ids[0], "name": bucket,
                                                           "retentionRules": []}, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        out.append(failed("influxdb bucket", f"creating bucket {bucket!r}: {transport_reason(exc)}"))
        return out
    if resp.status_code == 201:
        out.append(passed("influxdb bucket", f"bucket {bucket!r} created"))
    else:
        out.append(failed("influxdb bucket", f"creating bucket {bucket!r} failed: HTTP {resp.status_code} "
                                            f"{resp.text[:200]}", "the token needs write access to buckets"))
    return out
