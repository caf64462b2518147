"""DestinationRule `loadBalancer` rules (`validateLoadBalancer`, `ValidateLocalityLbSetting`).

Input: a LoadBalancerSettings mapping, whether the same policy level has `outlierDetection`, and
its data path.
Output: findings; the locality checks stop at the first error where the Go code returns early
(distribute+failover, failover+topology priority, a bad weight, a bad total).
Invariants: overlap detection of locality strings follows `validateLocalities` (first error only,
entries examined in written order).
Codes emitted: I306 percentage range (shared with outlier detection), I311-I329, I344 unknown enum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meshc.check.istio.codes import Rule, webhook_error, webhook_warning
from meshc.check.istio.fields import as_int, as_list, as_map, as_number, as_str, enum_index, is_set
from meshc.check.istio.primitives import AGENT, VALIDATION, check_duration
from meshc.model.diagnostics import DataPath, Finding

_LB = f"{VALIDATION} validateLoadBalancer"
_LOC = f"{AGENT} ValidateLocalityLbSetting"
TOPOLOGY_LABELS = frozenset({"topology.kubernetes.io/region", "topology.kubernetes.io/zone",
                             "topology.istio.io/subzone"})
LB_SIMPLE = ("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST")
MAGLEV_LIMIT = 5000011

PERCENT = webhook_error("I306", "percentage outside 0..100", f"{VALIDATION} ValidatePercent; {_LB} (warmup)",
                        "use a value between 0 and 100")
COOKIE_NAME = webhook_error("I311", "consistentHash.httpCookie without name", _LB, "set httpCookie.name")
COOKIE_ATTRIBUTE_NAME = webhook_error("I312", "httpCookie attribute without name", _LB,
                                      "give every cookie attribute a name")
COOKIE_ATTRIBUTE_DUPLICATE = webhook_error("I313", "two httpCookie attributes with the same name", _LB,
                                           "list each cookie attribute once")
MIN_RING_DEPRECATED = webhook_warning("I314", "consistentHash.minimumRingSize is deprecated", _LB,
                                      "use consistentHash.ringHash.minimumRingSize")
MIN_RING_WITH_ALGORITHM = webhook_error("I315", "minimumRingSize combined with ringHash or maglev", _LB,
                                        "drop the deprecated top-level minimumRingSize")
MAGLEV_TABLE = webhook_error("I316", "maglev.tableSize missing, too large or not prime", _LB,
                             "use a prime below 5000011, e.g. 65537")
LOCALITY_AND_ZONE_AWARE = webhook_error("I317", "both localityLbSetting and zoneAwareLbSetting", _LB,
                                        "use only one of localityLbSetting and zoneAwareLbSetting")
DISTRIBUTE_AND_FAILOVER = webhook_error("I318", "locality distribute and failover together", _LOC,
                                        "use either distribute or failover")
FAILOVER_TOPOLOGY_PRIORITY = webhook_error(
    "I319", "locality failover with a region/zone/subzone label in failoverPriority", _LOC,
    "drop the topology label from failoverPriority or drop failover")
ZONE_AWARE_TOPOLOGY_PRIORITY = webhook_error(
    "I320", "zoneAwareLbSetting.failoverPriority holds a region/zone/subzone label", _LB,
    "list only non-topology labels in zoneAwareLbSetting.failoverPriority")
LOCALITY_WEIGHT = webhook_error("I321", "locality weight outside 1..100", _LOC, "use weights from 1 to 100")
LOCALITY_TOTAL = webhook_error("I322", "locality weights of one distribute entry do not sum to 100", _LOC,
                               "make the weights of each 'to' map add up to 100")
LOCALITY_FORMAT = webhook_error("I323", "locality string with misplaced '*' or an empty segment",
                                f"{AGENT} validateLocalities", "write region[/zone[/subzone]] with '*' only at the end")
LOCALITY_OVERLAP = webhook_error("I324", "overlapping locality entries", f"{AGENT} validateLocalities",
                                 "remove entries already covered by a wildcard or listed twice")
FAILOVER_WITHOUT_OUTLIER = webhook_warning(
    "I325", "failover or failoverPriority without outlierDetection (failover never triggers)", _LOC,
    "add outlierDetection to the same traffic policy")
FAILOVER_SAME_REGION = webhook_error("I326", "locality failover from and to are the same region", _LOC,
                                     "fail over to a different region")
FAILOVER_NOT_REGION = webhook_error("I327", "locality failover from/to contains '/' or '*'", _LOC,
                                    "name plain regions in failover from/to")
WARMUP_DURATION = webhook_error("I328", "warmup without duration", _LB, "set warmup.duration")
WARMUP_AGGRESSION = webhook_error("I329", "warmup.aggression not greater than 0", _LB,
                                  "use an aggression above 0 (1.0 is linear)")
ENUM_UNKNOWN = webhook_error("I344", "unknown enum value", "DestinationRule proto (decoding)",
                             "use one of the values listed in the message")

RULES: tuple[Rule, ...] = (
    PERCENT, COOKIE_NAME, COOKIE_ATTRIBUTE_NAME, COOKIE_ATTRIBUTE_DUPLICATE, MIN_RING_DEPRECATED,
    MIN_RING_WITH_ALGORITHM, MAGLEV_TABLE, LOCALITY_AND_ZONE_AWARE, DISTRIBUTE_AND_FAILOVER,
    FAILOVER_TOPOLOGY_PRIORITY, ZONE_AWARE_TOPOLOGY_PRIORITY, LOCALITY_WEIGHT, LOCALITY_TOTAL, LOCALITY_FORMAT,
    LOCALITY_OVERLAP, FAILOVER_WITHOUT_OUTLIER, FAILOVER_SAME_REGION, FAILOVER_NOT_REGION, WARMUP_DURATION,
    WARMUP_AGGRESSION, ENUM_UNKNOWN,
)


def check_enum(value: Any, names: Sequence[str], path: DataPath) -> list[Finding]:
    if 0 <= enum_index(value, names) < len(names):
        return []
    return [ENUM_UNKNOWN.at(path, f"unknown value {value!r}; expected one of {', '.join(names)}")]


def check_percent(value: Any, path: DataPath) -> list[Finding]:
    number = as_number(value)
    if number is None or 0 <= number <= 100:
        return []
    return [PERCENT.at(path, f"percentage {value} is not in range 0..100")]


def check_load_balancer(lb: Mapping[str, Any], has_outlier: bool, path: DataPath) -> list[Finding]:
    out = check_enum(lb.get("simple"), LB_SIMPLE, (*path, "simple")) if is_set(lb, "simple") else []
    if is_set(lb, "consistentHash"):
        out += _consistent_hash(as_map(lb["consistentHash"]), (*path, "consistentHash"))
    if is_set(lb, "localityLbSetting") and is_set(lb, "zoneAwareLbSetting"):
        out.append(LOCALITY_AND_ZONE_AWARE.at(path, "only one of localityLbSetting and zoneAwareLbSetting "
                                                    "may be set"))
    if is_set(lb, "localityLbSetting"):
        out += _locality(as_map(lb["localityLbSetting"]), has_outlier, (*path, "localityLbSetting"))
    if is_set(lb, "zoneAwareLbSetting"):
        out += _zone_aware(as_map(lb["zoneAwareLbSetting"]), (*path, "zoneAwareLbSetting"))
    if is_set(lb, "warmup"):
        out += _warmup(as_map(lb["warmup"]), (*path, "warmup"))
    return out


def _consistent_hash(ch: Mapping[str, Any], path: DataPath) -> list[Finding]:
    out: list[Finding] = []
    if is_set(ch, "httpCookie"):
        out += _cookie(as_map(ch["httpCookie"]), (*path, "httpCookie"))
    if as_int(ch.get("minimumRingSize")):
        out.append(MIN_RING_DEPRECATED.at((*path, "minimumRingSize"), "consistent hash MinimumRingSize is "
                                          "deprecated, use ConsistentHashLB's RingHash configuration instead"))
        if is_set(ch, "ringHash") or is_set(ch, "maglev"):
            out.append(MIN_RING_WITH_ALGORITHM.at((*path, "minimumRingSize"),
                                                  "only one of MinimumRingSize or Maglev/Ringhash can be specified"))
    if is_set(ch, "maglev"):
        out += _maglev(as_map(ch["maglev"]).get("tableSize"), (*path, "maglev", "tableSize"))
    return out


def _cookie(cookie: Mapping[str, Any], path: DataPath) -> list[Finding]:
    out: list[Finding] = []
    if not as_str(cookie.get("name")):
        out.append(COOKIE_NAME.at((*path, "name"), "name required for HttpCookie"))
    seen: set[str] = set()
    for i, attribute in enumerate(as_list(cookie.get("attributes"))):
        name = as_str(as_map(attribute).get("name"))
        if not name:
            out.append(COOKIE_ATTRIBUTE_NAME.at((*path, "attributes", i, "name"), "cookie attribute name is required"))
        elif name in seen:
            out.append(COOKIE_ATTRIBUTE_DUPLICATE.at((*path, "attributes", i, "name"),
                                                     f"duplicate cookie attribute name {name!r}"))
        seen.add(name)
    return out


def _is_prime(n: int) -> bool:
    """Envoy's primality test as Istio uses it (0 is not prime, 1..3 are)."""
    if 0 < n < 4:
        return True
    if n % 2 == 0:
        return False
    return all(n % f for f in range(3, int(n**0.5) + 1, 2))


def _maglev(value: Any, path: DataPath) -> list[Finding]:
    size = as_int(value) or 0
    out: list[Finding] = []
    if size == 0:
        out.append(MAGLEV_TABLE.at(path, "tableSize must be set for maglev"))
    if size >= MAGLEV_LIMIT:
        out.append(MAGLEV_TABLE.at(path, f"tableSize must be less than {MAGLEV_LIMIT} for maglev"))
    elif size < 0 or not _is_prime(size):
        out.append(MAGLEV_TABLE.at(path, "tableSize must be a prime number for maglev"))
    return out


def _locality(setting: Mapping[str, Any], has_outlier: bool, path: DataPath) -> list[Finding]:
    distribute, failover = as_list(setting.get("distribute")), as_list(setting.get("failover"))
    priority = [as_str(p) for p in as_list(setting.get("failoverPriority"))]
    if distribute and failover:
        return [DISTRIBUTE_AND_FAILOVER.at(path, "can not simultaneously specify 'distribute' and 'failover'")]
    topology = next((i for i, p in enumerate(priority) if p in TOPOLOGY_LABELS), None)
    if failover and topology is not None:
        return [FAILOVER_TOPOLOGY_PRIORITY.at((*path, "failoverPriority", topology), "can not simultaneously set "
                                              f"'failover' and topology label {priority[topology]!r}")]
    out, stop = _distribute(distribute, (*path, "distribute"))
    if stop:
        return out
    if (failover or priority) and not has_outlier:
        out.append(FAILOVER_WITHOUT_OUTLIER.at(path, "outlier detection policy must be provided for failover"))
    return out + _failover(failover, (*path, "failover"))


def _distribute(entries: Sequence[Any], path: DataPath) -> tuple[list[Finding], bool]:
    """Weights and locality strings of `distribute`; True when Go returns early."""
    out: list[Finding] = []
    for i, entry in enumerate(entries):
        to = {as_str(k): v for k, v in as_map(as_map(entry).get("to")).items()}
        for key, weight in to.items():
            if not 1 <= (as_int(weight) or 0) <= 100:
                bad = LOCALITY_WEIGHT.at((*path, i, "to", key), "locality weight must be in range [1, 100]")
                return [*out, bad], True
        total = sum(as_int(w) or 0 for w in to.values())
        if total != 100:
            return [*out, LOCALITY_TOTAL.at((*path, i, "to"), f"total locality weight {total} != 100")], True
        out += _localities([(k, (*path, i, "to", k)) for k in to])
    sources = [(as_str(as_map(e).get("from")), (*path, i, "from")) for i, e in enumerate(entries)]
    return out + _localities(sources), False


def _localities(items: list[tuple[str, DataPath]]) -> list[Finding]:
    """`validateLocalities`: the first misplaced wildcard, empty segment or overlap."""
    seen: dict[str, dict[str, set[str]]] = {}
    for locality, path in items:
        stars = locality.count("*")
        if stars and (stars > 1 or not locality.endswith("*")):
            return [LOCALITY_FORMAT.at(path, f"locality {locality} wildcard '*' number can not exceed 1 "
                                             "and must be in the end")]
        if "*" in seen:
            return [LOCALITY_OVERLAP.at(path, f"locality {locality} overlap with previous specified ones")]
        parts = locality.split("/", 2)
        if "" in parts:
            return [LOCALITY_FORMAT.at(path, f"locality {locality} must not contain empty region/zone/subzone info")]
        if _register(seen, parts):
            return [LOCALITY_OVERLAP.at(path, f"locality {locality} overlap with previous specified ones")]
    return []


def _register(seen: dict[str, dict[str, set[str]]], parts: list[str]) -> bool:
    """Record region[/zone[/subzone]]; True when it overlaps an earlier entry."""
    region = parts[0]
    if len(parts) == 1:
        if region in seen:
            return True
        seen[region] = {"*": {"*"}}
        return False
    zones = seen.setdefault(region, {})
    if "*" in zones or (len(parts) == 2 and parts[1] in zones):
        return True
    if len(parts) == 2:
        zones[parts[1]] = {"*"}
        return False
    subzones = zones.setdefault(parts[1], set())
    if "*" in subzones or parts[2] in subzones:
        return True
    subzones.add(parts[2])
    return False


def _failover(entries: Sequence[Any], path: DataPath) -> list[Finding]:
    out: list[Finding] = []
    for i, entry in enumerate(entries):
        source, target = as_str(as_map(entry).get("from")), as_str(as_map(entry).get("to"))
        where = (*path, i)
        if source == target:
            out.append(FAILOVER_SAME_REGION.at(where, "locality lb failover settings must specify different regions"))
        if "/" in source or "/" in target:
            out.append(FAILOVER_NOT_REGION.at(where, "locality lb failover only specify region"))
        if "*" in source or "*" in target:
            out.append(FAILOVER_NOT_REGION.at(where, "locality lb failover region should not contain '*' wildcard"))
    return out


def _zone_aware(setting: Mapping[str, Any], path: DataPath) -> list[Finding]:
    out = [ZONE_AWARE_TOPOLOGY_PRIORITY.at((*path, "failoverPriority", i), f"topology label {as_str(p)!r} is not "
                                           "allowed in zoneAwareLbSetting.failoverPriority")
           for i, p in enumerate(as_list(setting.get("failoverPriority"))) if as_str(p) in TOPOLOGY_LABELS]
    return out + _failover(as_list(setting.get("failover")), (*path, "failover"))


def _warmup(warmup: Mapping[str, Any], path: DataPath) -> list[Finding]:
    if is_set(warmup, "duration"):
        out = check_duration(warmup["duration"], (*path, "duration"))
    else:
        out = [WARMUP_DURATION.at(path, "duration is required")]
    percent = as_number(warmup.get("minimumPercent"))
    if percent is not None and percent > 100:
        out.append(PERCENT.at((*path, "minimumPercent"), "minimumPercent value should be less than or equal to 100"))
    aggression = as_number(warmup.get("aggression"))
    if aggression is not None and aggression <= 0:
        out.append(WARMUP_AGGRESSION.at((*path, "aggression"), "aggression must be greater than 0"))
    return out
