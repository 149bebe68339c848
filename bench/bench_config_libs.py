"""The config-library decision, measured: the same 10 bad configs through the hand-written model, pydantic v2
and attrs+cattrs; lines of code of each model; import time against the CLI budget (whole process, median of 5).

    python bench/bench_config_libs.py            # needs `pip install pydantic cattrs` (not project dependencies)

The two library models cover [agent] and [[box]] with the same keys, types, ranges and rules as
agent.core.config (what a box address may be, a zone the database loads, timeout < interval), written
the way each library's documentation recommends (pydantic: strict model, extra="forbid", aliases for the
TOML keys, field/model validators; cattrs: attrs classes with validators, a Converter with
forbid_extra_keys and detailed validation, cattrs.transform_error for the messages). Not product code.
"""
# No `from __future__ import annotations`: cattrs resolves the annotations of these local classes at run time.
import inspect
import ipaddress
import os
import statistics
import subprocess
import sys
import textwrap
import tomllib
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from agent.core import config as hand  # noqa: E402
from agent.core.config.convert import address_problem  # noqa: E402

BASE = """\
[agent]
interval = 10
timeout = 1.0
state_dir = "/var/lib/vobox-agent"

[[box]]
name = "vobox-ctr-1"
kind = "container"
container = "vobox1"
network = "docknet"
ipv4 = "192.0.2.10"
tcp_ports = [1093, 8084]

[[box]]
name = "vobox-vm-1"
kind = "vm"
ipv4 = "192.0.2.20"
"""

# (what, text): each is BASE with one mistake an admin makes (the last one: three at once).
BAD = [
    ("a typo in a key", BASE.replace("interval = 10", "intervall = 10")),
    ("interval 0", BASE.replace("interval = 10", "interval = 0")),
    ("a number written as a string", BASE.replace("interval = 10", 'interval = "10"')),
    ("a port that is not a number", BASE.replace("[1093, 8084]", '[1093, "x"]')),
    ("an IPv4-mapped IPv6", BASE.replace('ipv4 = "192.0.2.20"', 'ipv4 = "192.0.2.20"\nipv6 = "::ffff:192.0.2.20"')),
    ("an unknown box kind", BASE.replace('kind = "vm"', 'kind = "lxc"')),
    ("a box without a name", BASE.replace('name = "vobox-vm-1"\n', "")),
    ("timeout not below interval", BASE.replace("timeout = 1.0", "timeout = 10")),
    ("a boolean written as 1", BASE.replace('kind = "vm"', 'kind = "vm"\ndry_run = 1')),
    ("three mistakes at once", BASE.replace("interval = 10", "interval = -1").replace("[1093, 8084]", '["x"]')
     .replace('kind = "vm"', 'kind = "pc"')),
]


# --- pydantic v2 ---

def pydantic_model() -> Any:
    from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

    def host_address(version: int) -> Any:
        def check(v: str) -> str:
            if "%" in v:
                raise ValueError("scoped addresses cannot be probed")
            addr = ipaddress.ip_address(v)
            if addr.version != version:
                raise ValueError(f"expected an IPv{version} address")
            problem = address_problem(addr, "host", link_local_ok=True)
            if problem:
                raise ValueError(problem)
            return str(addr)
        return check

    class Agent(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")
        interval_s: Annotated[float, Field(alias="interval", gt=0)] = 10.0
        timeout_s: Annotated[float, Field(alias="timeout", gt=0)] = 1.0
        jitter_s: Annotated[float, Field(alias="jitter", ge=0)] = 0.5
        state_dir: Annotated[str, Field(min_length=1)] = "/var/lib/vobox-agent"
        interface: str | None = None
        site: Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]+$")] | None = None

        @model_validator(mode="after")
        def below_interval(self) -> "Agent":
            if self.timeout_s >= self.interval_s:
                raise ValueError(f"timeout must be less than interval ({self.interval_s:g} s)")
            return self

    class Box(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")
        name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
        kind: Literal["container", "vm"]
        ipv4: str | None = None
        ipv6: str | None = None
        tcp_ports: list[Annotated[int, Field(ge=1, le=65535)]] = []
        container: str | None = None
        network: str | None = None
        dry_run: bool = False

        _v4 = field_validator("ipv4")(classmethod(lambda cls, v: None if v is None else host_address(4)(v)))
        _v6 = field_validator("ipv6")(classmethod(lambda cls, v: None if v is None else host_address(6)(v)))

        @field_validator("tcp_ports")
        @classmethod
        def unique(cls, v: list[int]) -> list[int]:
            if len(set(v)) != len(v):
                raise ValueError("duplicate port")
            return v

        @model_validator(mode="after")
        def cross(self) -> "Box":
            if not self.ipv4 and not self.ipv6:
                raise ValueError("needs ipv4 or ipv6 (or both)")
            if self.kind == "container" and not (self.container and self.network):
                raise ValueError('container and network are required for kind = "container"')
            return self

    class Maintenance(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")
        timezone: str = "UTC"

        @field_validator("timezone")
        @classmethod
        def zone(cls, v: str) -> str:
            ZoneInfo(v)
            return v

    class Config(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")
        agent: Agent = Agent()
        box: list[Box]
        maintenance: list[Maintenance] = []

    return Config


def pydantic_errors(model: Any, data: dict[str, Any]) -> list[str]:
    from pydantic import ValidationError

    try:
        model.model_validate(data)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return []


# --- attrs + cattrs ---

def cattrs_model() -> tuple[Any, Any]:
    import attrs
    import cattrs
    from attrs import validators as V

    def host_address(version: int) -> Any:
        def check(_inst: Any, attr: Any, v: str | None) -> None:
            if v is None:
                return
            addr = ipaddress.ip_address(v)
            if addr.version != version:
                raise ValueError(f"expected an IPv{version} address")
            problem = address_problem(addr, "host", link_local_ok=True)
            if problem:
                raise ValueError(problem)
        return check

    def below_interval(inst: Any, attr: Any, v: float) -> None:
        if v >= inst.interval:
            raise ValueError(f"timeout must be less than interval ({inst.interval:g} s)")

    @attrs.frozen
    class Agent:
        interval: float = attrs.field(default=10.0, validator=V.gt(0))
        timeout: float = attrs.field(default=1.0, validator=[V.gt(0), below_interval])
        jitter: float = attrs.field(default=0.5, validator=V.ge(0))
        state_dir: str = attrs.field(default="/var/lib/vobox-agent", validator=V.min_len(1))
        interface: str | None = None
        site: str | None = attrs.field(default=None, validator=V.optional(V.matches_re(r"^[^\x00-\x1f\x7f]+$")))

    def unique(_inst: Any, _attr: Any, v: list[int]) -> None:
        if len(set(v)) != len(v):
            raise ValueError("duplicate port")

    @attrs.frozen
    class Box:
        name: str = attrs.field(validator=V.matches_re(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"))
        kind: str = attrs.field(validator=V.in_(("container", "vm")))
        ipv4: str | None = attrs.field(default=None, validator=host_address(4))
        ipv6: str | None = attrs.field(default=None, validator=host_address(6))
        tcp_ports: list[int] = attrs.field(factory=list, validator=[
            V.deep_iterable(V.and_(V.ge(1), V.le(65535))), unique])
        container: str | None = None
        network: str | None = None
        dry_run: bool = attrs.field(default=False, validator=V.instance_of(bool))

        def __attrs_post_init__(self) -> None:
            if not self.ipv4 and not self.ipv6:
                raise ValueError("needs ipv4 or ipv6 (or both)")

    def zone(_inst: Any, _attr: Any, v: str) -> None:
        ZoneInfo(v)

    @attrs.frozen
    class Maintenance:
        timezone: str = attrs.field(default="UTC", validator=zone)

    @attrs.frozen
    class Config:
        box: list[Box]
        agent: Agent = Agent()
        maintenance: list[Maintenance] = attrs.field(factory=list)

    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True, prefer_attrib_converters=False)
    return conv, Config


def cattrs_errors(model: tuple[Any, Any], data: dict[str, Any]) -> list[str]:
    import cattrs

    conv, cls = model
    try:
        conv.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        return list(cattrs.transform_error(exc))
    except (ValueError, TypeError) as exc:   # a validator's error escapes detailed validation when raised by attrs
        return [f"(no key path) {exc}"]
    return []


def hand_errors(text: str) -> list[str]:
    try:
        hand.loads(text)
    except hand.ConfigError as exc:
        return list(exc.errors)
    return []


def import_time_s(module: str, runs: int = 5) -> float:
    """Median wall time of `python -c "import MODULE"` (whole process), seconds."""
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", f"import time; t = time.perf_counter(); import {module}; "
                              "print(time.perf_counter() - t)"], capture_output=True, text=True, cwd=ROOT, check=True)
        times.append(float(out.stdout))
    return statistics.median(times)


def process_time_s(code: str, runs: int = 5) -> float:
    """Median wall time of a whole `python -c CODE` process, seconds."""
    import time
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    pyd, cat = pydantic_model(), cattrs_model()
    for i, (what, text) in enumerate(BAD, 1):
        data = tomllib.loads(text)
        print(f"\n## {i}. {what}")
        for name, errors in (("hand-written", hand_errors(text)), ("pydantic", pydantic_errors(pyd, data)),
                             ("attrs+cattrs", cattrs_errors(cat, data))):
            print(f"{name}:")
            for e in errors or ["(accepted)"]:
                print(textwrap.indent(e, "    "))
    print("\n## lines of code of the [agent] + [[box]] + zone models above (the library versions, incl. blank lines)")
    for fn in (pydantic_model, cattrs_model):
        print(f"{fn.__name__}: {len(inspect.getsource(fn).splitlines())}")
    print("\n## lines of the hand-written package (wc -l)")
    for name in ("convert", "model", "load", "runtime", "files", "schema"):
        with open(os.path.join(ROOT, "agent", "core", "config", f"{name}.py")) as fh:
            print(f"agent/core/config/{name}.py: {sum(1 for _ in fh)}")
    print("\n## whole process, median of 5 (budget: `vobox-agent --version` <= 0.15 s)")
    for what, code in (("python -c pass", "pass"),
                       ("pydantic (BaseModel, Field, validators)",
                        "from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator"),
                       ("pydantic + the model above built", "import sys; sys.path.insert(0, 'bench'); "
                        "from bench_config_libs import pydantic_model; pydantic_model()"),
                       ("attrs + cattrs (Converter)", "import attrs, cattrs; cattrs.Converter()"),
                       ("attrs + cattrs + the model above structured", "import sys; sys.path.insert(0, 'bench'); "
                        "import tomllib; from bench_config_libs import BASE, cattrs_model; c, k = cattrs_model(); "
                        "c.structure(tomllib.loads(BASE), k)"),
                       ("bench module alone (imports agent.core.config)", "import sys; sys.path.insert(0, 'bench'); "
                        "import bench_config_libs"),
                       ("agent.core.config (its registries: probes, checks, remediations)",
                        "import agent.core.config")):
        print(f"{what}: {process_time_s(code):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
