"""The report's Prometheus reads: the same FleetObservation as read.py, from the agent's /metrics counters.

Works against any server of the Prometheus HTTP query API (`/api/v1/query`, `/api/v1/query_range`):
Prometheus, Thanos Query, Mimir (its `.../prometheus` prefix); only Prometheus 2.42 is tested here.

How each figure is read (the agreement with the InfluxDB report, issue 31):
  - counts are differences of raw counter samples, never increase()/rate() (which extrapolate): for each
    series, its samples at the range's start (`BASELINE_S` back; none: the series began inside the range,
    from 0, as the agent starts every counter at 0), at each bucket edge inside the range and at its end,
    taken by the server (a range query); a step in which `resets()` is not 0 (the agent restarted) is read
    as raw samples and summed delta by delta, a drop counting the new value (Prometheus' reading of a
    reset): a month of 500 boxes is a few dozen queries, an agent restart one more per counter;
  - cycles, down cycles, failed cycles, maintenance cycles per box: vobox_box_*_cycles_total; the
    availability, exposure and MTBF follow from them as from the `box` points' count(up) and sum(up);
  - freezes per box and layer: vobox_freezes_closed_total{layer} (the deepest layer, as `freeze`.layer)
    plus the freeze open at the end (vobox_box_freeze_start_timestamp_seconds, vobox_box_layer); a freeze
    open at the range's start started before it and is left out (InfluxDB's point sits at its start): its
    close is taken out of the counts by reading that box's raw samples;
  - MTTR: the duration histogram's _sum and _count (the sum of the closed freezes' durations, exactly);
  - remediations: vobox_remediations_total, the actions that ran (result recovered, not_recovered,
    unverified, failed), as count("ok") of the `remediation` points;
  - buckets (the charts): the cycle counters at each bucket's edges (query_range, step = the bucket).
Per-freeze start times are not read (the counters do not carry them): a closed freeze's record has the
start of the bucket (day or hour) it closed in and its box's mean duration; segment outages and the split
by audit class are not read (their box lists and audit periods are InfluxDB's only). Series that differ only
in other labels (job, instance) are summed: deduplicate HA replicas first (Thanos, Mimir do).
"""
from __future__ import annotations

import json
import math
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.core.config.model import DEFAULT_SITE_LABEL
from agent.report.stats import BoxRecord, Bucket, FleetObservation, FreezeRecord
from probes import LAYERS

RAW_CHUNK_S = 86400       # raw samples are fetched a day per query
BASELINE_S = 3600          # how far before the range's start a counter's baseline sample is looked for
DEFAULT_TIMEOUT_S = 60.0   # per query: a month of 500 boxes takes seconds (bench/bench_report.py)
# The label the agents export the site in: [metrics] site_label's default (vobox_site, issue 31); another name
# (the scrape config's own `site`, an agent's site_label) is given by `report --site-label`.
SITE_LABEL = DEFAULT_SITE_LABEL
RAN_RESULTS = ("recovered", "not_recovered", "unverified", "failed")   # agent.listeners.metrics: actions that ran

Labels = Mapping[str, str]
Fetch = Callable[[str, Mapping[str, str]], Any]     # (API path, form parameters) -> the answer's "data"
BoxKey = tuple[str, str, str]                       # (site, box, kind)


class PromError(RuntimeError):
    """A query failed; the one-line message says what was tried and what to check."""


def http_fetch(url: str, headers: Mapping[str, str] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
               context: ssl.SSLContext | None = None) -> Fetch:
    """A Fetch POSTing form parameters to URL + path (headers: e.g. Authorization, X-Scope-OrgID).

    Raises PromError (one line: the URL, the reason, what to check) for a refused connection, an HTTP
    error, an answer that is not the API's JSON, or an API error (`status` not "success").
    """
    base = url.rstrip("/")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))

    def fetch(path: str, params: Mapping[str, str]) -> Any:
        target = base + path
        req = urllib.request.Request(target, data=urllib.parse.urlencode(params).encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded",
                                              "Accept": "application/json", **(headers or {})})
        what = f"POST {target} ({_reading(params.get('query', ''))})"
        try:
            with opener.open(req, timeout=timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            detail = _api_error(exc.read()) or exc.reason
            hint = ("check --header/--bearer-token-file" if exc.code in (401, 403) else
                    "check the URL: the query API's base (Mimir: .../prometheus)" if exc.code == 404 else
                    "check the server's log and limits (query.max-samples, timeouts)")
            raise PromError(f"{what}: HTTP {exc.code} {detail}; {hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PromError(f"{what}: {reason}; check that the server runs and the URL (scheme, host, port) "
                            "is right") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise PromError(f"{what}: the answer is not JSON ({body[:60]!r}); check that the URL is a Prometheus "
                            "query API (not a UI or proxy page)") from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise PromError(f"{what}: {_api_error(body) or 'not a Prometheus API answer'}")
        return answer.get("data")

    return fetch


def _api_error(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if isinstance(answer, dict) and answer.get("error"):
        return f"{answer.get('errorType', 'error')}: {answer['error']}"
    return None


# ----- the query API, parsed --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Api:
    """Instant and range queries through a Fetch, answers as (labels, value) / (labels, samples)."""

    fetch: Fetch

    def vector(self, expr: str, at_s: float) -> list[tuple[dict[str, str], float]]:
        """An instant query returning an instant vector: (labels, value) per series."""
        data = self.fetch("/api/v1/query", {"query": expr, "time": _ts(at_s)})
        return [(dict(r["metric"]), float(r["value"][1])) for r in _result(data, "vector", expr)]

    def matrix(self, expr: str, at_s: float) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """An instant query of a range selector (`m[5m]`): the raw samples (time s, value) per series."""
        data = self.fetch("/api/v1/query", {"query": expr, "time": _ts(at_s)})
        return [(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]])
                for r in _result(data, "matrix", expr)]

    def range(self, expr: str, start_s: float, end_s: float, step_s: float
              ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """A range query: the expression at start, start + step, ... end."""
        data = self.fetch("/api/v1/query_range", {"query": expr, "start": _ts(start_s), "end": _ts(end_s),
                                                  "step": _ts(step_s)})
        return [(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]])
                for r in _result(data, "matrix", expr)]


_NOT_METRIC = re.compile(r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)'
                         r'|\[[^\]]*\]')
_NAME = re.compile(r"(?<![\w:.])[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"})


def _reading(expr: str) -> str:
    """What a query read, for an error line: its metric names ("vobox_box_cycles_total"), never the query text
    (one line without a query string, issue 33); "a query" when it names none."""
    names = sorted({n for n in _NAME.findall(_NOT_METRIC.sub(" ", expr)) if n.lower() not in _KEYWORDS})
    return ", ".join(names) if names else "a query"


def _ts(s: float) -> str:
    return f"{s:.3f}"


def _result(data: Any, want: str, expr: str) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or data.get("resultType") != want or not isinstance(data.get("result"), list):
        got = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise PromError(f"query of {_reading(expr)}: expected a {want}, got {got}")
    result: list[dict[str, Any]] = data["result"]
    return result


# ----- counters from raw samples ------------------------------------------------------------------------------
def counter_increase(samples: Sequence[tuple[float, float]], start_s: float) -> float:
    """What a counter counted after start_s: the sum of the deltas of its raw samples (time s, value), oldest
    first, from its last sample at or before start_s (none: from 0, the series began after start_s); a drop is
    a reset (the process restarted from 0), which counts the new value (as Prometheus' resets())."""
    prev: float | None = None
    total = 0.0
    for t, v in samples:
        if t <= start_s:
            prev = v
            continue
        if prev is None:
            total += v
        elif v >= prev:
            total += v - prev
        else:
            total += v
        prev = v
    return total


def _lt(labels: Labels) -> tuple[tuple[str, str], ...]:
    """A series' identity: its labels without the metric name (functions such as resets() drop it)."""
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def _edges(after_s: float, until_s: float, step_s: float, end_s: float) -> list[float]:
    """The step edges in (after_s, until_s], and end_s when it is until_s (the resets() windows end there)."""
    first = math.floor(after_s / step_s) * step_s + step_s
    out = [first + k * step_s for k in range(int((until_s - first) // step_s) + 1)] if first <= until_s else []
    return out + ([end_s] if until_s == end_s else [])


def _key(labels: Labels, *extra: str, site_label: str = SITE_LABEL) -> tuple[str, ...]:
    return (labels.get(site_label, ""), labels.get("box", ""), labels.get("kind", ""),
            *(labels.get(e, "") for e in extra))


def _selector(metric: str, site: str | None, more: Mapping[str, str] | None = None,
              site_label: str = SITE_LABEL) -> str:
    matchers = {**({site_label: site} if site is not None else {}), **(more or {})}
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in matchers.items())
    return f"{metric}{{{inner}}}" if inner else metric


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _dur(s: float) -> str:
    return f"{max(1, int(math.ceil(s)))}s"


class Reader:
    """Reads one range of one site (or all) through an Api; every count exact, as the module says."""

    def __init__(self, api: Api, start_s: float, end_s: float, site: str | None,
                 site_label: str = SITE_LABEL) -> None:
        self.api = api
        self.site_label = site_label
        self.start_s = start_s
        self.end_s = end_s
        self.site = site
        self.window = _dur(end_s - start_s + BASELINE_S)   # the range and the baseline before it
        self._steps: dict[tuple[str, tuple[str, ...]], dict[tuple[str, ...], list[tuple[float, float]]]] = {}
        self.step_s = 86400 if end_s - start_s >= 3 * 86400 else 3600   # the report's buckets (read.py)

    def counters(self, metric: str, extra: Sequence[str] = ()) -> dict[tuple[str, ...], float]:
        """Per series (site, box, kind, *extra labels): what the counter counted in the range."""
        return {key: sum(d for _, d in steps) for key, steps in self.counter_steps(metric, extra).items()}

    def counter_steps(self, metric: str, extra: Sequence[str] = ()) -> dict[tuple[str, ...], list[tuple[float, float]]]:
        """Per series: (from s, counted until the next edge) over the range (cached per metric; _counter_steps)."""
        if (metric, tuple(extra)) not in self._steps:
            self._steps[(metric, tuple(extra))] = self._counter_steps(metric, extra)
        return self._steps[(metric, tuple(extra))]

    def _counter_steps(self, metric: str, extra: Sequence[str]) -> dict[tuple[str, ...], list[tuple[float, float]]]:
        """Per series: (from s, what the counter counted from there to the next edge) for the range's start, each
        edge of step_s (epoch-aligned) inside the range, and its end.

        The values at the edges come from the server (a range query); a step whose counter dropped or whose
        `resets()` is not 0 (the agent restarted in it) is read as raw samples and summed delta by delta (one
        query per such step for the metric, whatever the number of series). A series without a sample in the
        hour before the start began in the range: it counts from 0.
        """
        sel = _selector(metric, self.site, site_label=self.site_label)
        step = self.step_s
        first_edge = math.ceil(self.start_s / step) * step
        last_edge = math.floor((self.end_s - 0.001) / step) * step
        points: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for lab, v in self.api.vector(f"last_over_time({sel}[{_dur(BASELINE_S)}])", self.start_s):
            points.setdefault(_lt(lab), []).append((self.start_s, v))
        reset_at: set[tuple[tuple[tuple[str, str], ...], float]] = set()
        slack = 300   # a drop between the sample before a window and its first one is in the next window
        if first_edge <= last_edge:
            for lab, values in self.api.range(sel, first_edge, last_edge, step):
                points.setdefault(_lt(lab), []).extend(values)
            for lab, values in self.api.range(f"resets({sel}[{_dur(step + slack)}]) > 0", first_edge, last_edge,
                                              step):
                reset_at.update((_lt(lab), t) for t, _ in values)
        for lab, v in self.api.vector(sel, self.end_s - 0.001):
            points.setdefault(_lt(lab), []).append((self.end_s, v))
        since = last_edge if first_edge <= last_edge else self.start_s
        for lab, _ in self.api.vector(f"resets({sel}[{_dur(self.end_s - since + slack)}]) > 0", self.end_s):
            reset_at.add((_lt(lab), self.end_s))
        raw: dict[tuple[float, float], dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]] = {}
        out: dict[tuple[str, ...], list[tuple[float, float]]] = {}
        for lt, pts in points.items():
            pts.sort()
            prev_t, prev = self.start_s, 0.0
            steps: list[tuple[float, float]] = []
            for t, v in pts:
                if t <= prev_t:
                    prev = v           # the baseline at the start
                    continue
                if v < prev or any((lt, e) in reset_at for e in _edges(prev_t, t, step, self.end_s)):
                    if (prev_t, t) not in raw:
                        raw[(prev_t, t)] = {_lt(lab): smp for lab, smp in
                                            self.api.matrix(f"{sel}[{_dur(t - prev_t + slack)}]", t)}
                    delta = counter_increase([x for x in raw[(prev_t, t)].get(lt, []) if x[0] <= t], prev_t)
                else:
                    delta = v - prev
                steps.append((prev_t, delta))
                prev_t, prev = t, v
            key = _key(dict(lt), *extra, site_label=self.site_label)
            out.setdefault(key, []).extend(steps)
        return out

    def raw_series(self, sel: str) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """Raw samples of the series SEL selects, over the range and its baseline, a day per query (bounded
        answers); series keyed by their labels, samples oldest first."""
        merged: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        t0 = self.start_s - BASELINE_S
        while t0 < self.end_s:
            t1 = min(self.end_s, t0 + RAW_CHUNK_S)
            for lab, samples in self.api.matrix(f"{sel}[{_dur(t1 - t0)}]", t1):
                merged.setdefault(tuple(sorted(lab.items())), []).extend(s for s in samples if s[0] > t0)
            t0 = t1
        return [(dict(k), sorted(v)) for k, v in merged.items()]

    def gauges(self, metric: str, at_s: float, extra: Sequence[str] = ()) -> dict[tuple[str, ...], float]:
        """Per series: the gauge's value at at_s (Prometheus' 5-minute lookback)."""
        return {_key(lab, *extra, site_label=self.site_label): v
                for lab, v in self.api.vector(_selector(metric, self.site, site_label=self.site_label), at_s)}

    def max_over_range(self, metric: str) -> dict[tuple[str, ...], float]:
        """Per series: the largest sample in the range."""
        sel = _selector(metric, self.site, site_label=self.site_label)
        return {_key(lab, site_label=self.site_label): v for lab, v in
                self.api.vector(f"max_over_time({sel}[{_dur(self.end_s - self.start_s)}])", self.end_s)}

    def raw(self, metric: str, labels: Labels) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """Raw samples of one box's series of METRIC over the range and its baseline."""
        return self.raw_series(_selector(metric, None, labels))


@dataclass(frozen=True, slots=True)
class PromObservation:
    """What the Prometheus read found besides the observation: the sites and how often they were scraped."""

    observation: FleetObservation
    sites: tuple[str, ...]
    scrape_interval_s: float | None
    unobserved_s: float      # time with no sample of a site's agent for 2 scrape intervals, summed over sites


def read_prometheus(api: Api, start_ms: int, end_ms: int, site: str | None,
                    site_label: str = SITE_LABEL) -> PromObservation:
    """The FleetObservation of [start_ms, end_ms) for SITE (None: every site, boxes named SITE/BOX when there
    are several). Raises PromError (one line) when a query fails, and when the sites probe at different
    intervals (the report's figures are cycles x the interval: report those sites one --site at a time).
    site_label: the label that carries the site (`site`, or the name the scrape config gives it)."""
    start_s, end_s = start_ms / 1000, end_ms / 1000
    r = Reader(api, start_s, end_s, site, site_label)
    intervals = {lab.get(site_label, ""): v for lab, v in
                 api.vector(f"last_over_time({_selector('vobox_agent_cycle_interval_seconds', site, None, site_label)}"
                            f"[{_dur(end_s - start_s)}])", end_s)}
    cycles = r.counters("vobox_box_cycles_total")
    sites = tuple(sorted({k[0] for k in cycles} | set(intervals)))
    if len(set(intervals.values())) > 1:
        listing = ", ".join(f"{s or '(no site)'} {v:g} s" for s, v in sorted(intervals.items()))
        raise PromError(f"the sites probe at different intervals ({listing}): report them one --site at a time")
    interval_s = next(iter(intervals.values()), 0.0)
    if not interval_s and cycles:
        raise PromError(f"no vobox_agent_cycle_interval_seconds for {site or 'any site'} in the range: the agents' "
                        "metrics are older than the report reads; check the scrape of /metrics")

    def name(site_: str, box: str) -> str:
        return f"{site_}/{box}" if site is None and len(sites) > 1 else box

    down = r.counters("vobox_box_down_cycles_total")
    failed = r.counters("vobox_box_failed_cycles_total")
    maint = r.counters("vobox_box_maintenance_cycles_total")
    degraded = r.max_over_range("vobox_box_degraded")
    psc = r.max_over_range("vobox_box_percent_state_change")
    if not psc:   # issue 31: the ratio (0-1) may be all a newer agent serves
        psc = {k: 100 * v for k, v in r.max_over_range("vobox_box_state_change_ratio").items()}
    boxes = []
    for key in sorted(set(cycles) | {k for k, v in maint.items() if v}, key=lambda k: (k[2], name(k[0], k[1]))):
        n = round(cycles.get(key, 0.0))
        if n == 0 and not round(maint.get(key, 0.0)):
            continue
        n_down = round(down.get(key, 0.0))
        boxes.append(BoxRecord(name(key[0], key[1]), key[2], n, n - n_down, n, n - round(failed.get(key, 0.0)),
                               bool(degraded.get(key)), psc.get(key), round(maint.get(key, 0.0))))
    freezes = _freezes(r, name)
    span = _span(r)
    agent_cycles = r.counters("vobox_agent_cycles_total")
    remediations: dict[str, tuple[int, int]] = {}
    for key, v in _by(r.counters("vobox_remediations_total", ("action", "result")), 3, 4).items():
        action, result = key
        if action == "reset" or result not in RAN_RESULTS or not round(v):
            continue
        n, rec = remediations.get(action, (0, 0))
        remediations[action] = (n + round(v), rec + (round(v) if result == "recovered" else 0))
    obs = FleetObservation(start_ms, end_ms, interval_s, site, tuple(boxes), freezes,
                           _buckets(r), r.step_s, remediations,
                           span.first_ms, span.last_ms, round(sum(agent_cycles.values())) or None)
    return PromObservation(obs, sites, span.scrape_interval_s, span.unobserved_s)


def _by(counts: Mapping[tuple[str, ...], float], *idx: int) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for key, v in counts.items():
        k = tuple(key[i] for i in idx)
        out[k] = out.get(k, 0.0) + v
    return out


def _freezes(r: Reader, name: Callable[[str, str], str]) -> tuple[FreezeRecord, ...]:
    """The freezes that started in the range, by box and deepest layer (see the module)."""
    closed_steps = r.counter_steps("vobox_freezes_closed_total", ("layer",))
    closed = {k: sum(d for _, d in steps) for k, steps in closed_steps.items()}
    dur_sum = r.counters("vobox_freeze_duration_seconds_sum")
    dur_n = r.counters("vobox_freeze_duration_seconds_count")
    start_at_end = r.gauges("vobox_box_freeze_start_timestamp_seconds", r.end_s)
    start_at_start = r.gauges("vobox_box_freeze_start_timestamp_seconds", r.start_s)
    layer_at_end = {k[:3]: k[3] for k, v in r.gauges("vobox_box_layer", r.end_s, ("layer",)).items() if v == 1}
    records: list[FreezeRecord] = []
    for key in sorted({k[:3] for k, v in closed.items() if round(v)} | {k for k, v in start_at_end.items() if v}
                      | {k for k, v in start_at_start.items() if v}):
        site_, box, kind = key
        # each closed freeze at the start of the bucket it closed in (its own start is not in the counters)
        at = {layer: sorted(t for t, d in closed_steps.get((*key, layer), []) for _ in range(round(d)))
              for layer in LAYERS}
        total_s, n = dur_sum.get(key, 0.0), round(dur_n.get(key, 0.0))
        before = start_at_start.get(key, 0.0)
        if before and before < r.start_s and start_at_end.get(key) != before:
            # open at the start, closed in the range: its close is taken out (its start is before the range)
            layer, duration_s = _first_close(r, {r.site_label: site_, "box": box, "kind": kind} if site_ else
                                             {"box": box, "kind": kind})
            if at.get(layer):
                at[layer].pop(0)
                total_s -= duration_s
                n -= 1
        mean_s = total_s / n if n > 0 else 0.0
        for layer in LAYERS:
            records += [FreezeRecord(name(site_, box), kind, int(t * 1000), layer, mean_s, False) for t in at[layer]]
        now_start = start_at_end.get(key, 0.0)
        if now_start and now_start >= r.start_s:
            records.append(FreezeRecord(name(site_, box), kind, int(now_start * 1000),
                                        layer_at_end.get(key, "?"), r.end_s - now_start, True))
    return tuple(records)


def _first_close(r: Reader, labels: Labels) -> tuple[str, float]:
    """The layer and duration of a box's first freeze closed after the range's start (raw samples)."""
    layer, duration_s = "?", 0.0
    first_t = math.inf
    for lab, samples in r.raw("vobox_freezes_closed_total", labels):
        t = _first_rise(samples, r.start_s)
        if t is not None and t < first_t:
            first_t, layer = t, lab.get("layer", "?")
    for _, samples in r.raw("vobox_freeze_duration_seconds_sum", labels):
        prev = None
        for t, v in samples:
            if t > r.start_s and prev is not None and v != prev:
                duration_s = v - prev if v > prev else v
                break
            prev = v
    return layer, duration_s


def _first_rise(samples: Iterable[tuple[float, float]], after_s: float) -> float | None:
    prev = None
    for t, v in samples:
        if t > after_s and (prev is None or v != prev):
            return t
        prev = v
    return None


@dataclass(frozen=True, slots=True)
class _Span:
    first_ms: int | None
    last_ms: int | None
    scrape_interval_s: float | None
    unobserved_s: float


def _span(r: Reader) -> _Span:
    """First and last sample of the agents in the range, the scrape interval (the median spacing of a site's
    samples; the largest over the sites), and the time without a sample for 2 scrape intervals."""
    first_s, last_s, unobserved_s, spacing = math.inf, -math.inf, 0.0, []
    for _, samples in r.raw_series(_selector("vobox_agent_cycles_total", r.site, site_label=r.site_label)):
        times = [t for t, _ in samples if t > r.start_s]
        if not times:
            continue
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        scrape = sorted(gaps)[len(gaps) // 2] if gaps else 0.0
        spacing.append(scrape)
        first_s, last_s = min(first_s, times[0]), max(last_s, times[-1])
        if scrape:
            unobserved_s += sum(g for g in gaps if g > 2 * scrape)
    if first_s == math.inf:
        return _Span(None, None, None, 0.0)
    return _Span(int(first_s * 1000), int(min(last_s, r.end_s) * 1000), max(spacing) if spacing else None,
                 unobserved_s)


def _buckets(r: Reader) -> tuple[Bucket, ...]:
    """Cycles and up cycles per kind per bucket (aligned to the epoch, as InfluxQL's GROUP BY time()), from the
    counters' steps (Reader.counter_steps: its step is the bucket)."""
    totals: dict[tuple[int, str], list[float]] = {}
    for i, metric in enumerate(("vobox_box_cycles_total", "vobox_box_down_cycles_total")):
        for key, steps in r.counter_steps(metric).items():
            for t, d in steps:
                slot = totals.setdefault((int(math.floor(t / r.step_s) * r.step_s * 1000), key[2]), [0.0, 0.0])
                slot[i] += d
    return tuple(Bucket(t, kind, round(c), round(c - d)) for (t, kind), (c, d) in sorted(totals.items())
                 if round(c))
