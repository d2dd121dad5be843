"""The targets, and the one table of ``make bench`` built from the measurements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from benchmarks.harness import COMPARED, ROUTE_LABELS

#: The goals of the performance issue; evaluated and printed, never enforced.
TARGETS: Final = {
    "warm_vs_floor": 1.15,  # layer median at most this times the raw driver's
    "warm_vs_fastapi": 0.8,  # ... and at most this times FastAPI's
    "cold_vs_fastapi": 0.6,
    "snapstart_vs_cold": 0.25,  # after-restore hooks + first invocation, to the cold start
    "import_vs_copy": 0.3,  # at least
    "statements_max": 4,
    "rss_mib": 70.0,
    "layer_mb": 40.0,
}

HEADERS: Final = ("measure", "case", "layer", "compared with", "ratio", "target", "result")
Row = tuple[str, str, str, str, str, str, str]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _warm(warm: dict[str, Any]) -> list[Row]:
    floor_t, fastapi_t = TARGETS["warm_vs_floor"], TARGETS["warm_vs_fastapi"]
    out: list[Row] = []
    for stat, label in (("median_ms", "warm median ms"), ("p99_ms", "warm p99 ms")):
        for route in COMPARED:
            r = warm[route]
            layer, floor, fastapi = (r[v][stat] for v in ("layer", "floor", "fastapi"))
            judged = stat == "median_ms"
            ok = layer / floor <= floor_t and layer / fastapi <= fastapi_t
            out.append(
                (
                    label,
                    ROUTE_LABELS[route],
                    f"{layer:.2f}",
                    f"floor {floor:.2f} | FastAPI {fastapi:.2f}",
                    f"{layer / floor:.2f}x | {layer / fastapi:.2f}x",
                    f"<= {floor_t}x | <= {fastapi_t}x" if judged else "",
                    _verdict(ok) if judged else "",
                )
            )
    return out


def _cold(cold: dict[str, Any]) -> list[Row]:
    target = TARGETS["cold_vs_fastapi"]
    fastapi = cold["fastapi"]
    compared = f"FastAPI {fastapi['median_ms']:.0f} | {fastapi['p90_ms']:.0f}"
    out: list[Row] = []
    for logical_id, r in sorted(cold["functions"].items(), key=lambda item: -item[1]["median_ms"]):
        out.append(
            (
                "cold start ms",
                f"{logical_id.removesuffix('Function')} ({r['trigger']})",
                f"{r['median_ms']:.0f} ({r['import_median_ms']:.0f} + "
                f"{r['first_median_ms']:.0f}) | {r['p90_ms']:.0f}",
                compared,
                f"{r['ratio']:.2f}x | {r['p90_ratio']:.2f}x",
                f"<= {target}x",
                _verdict(r["ratio"] <= target),
            )
        )
    out.append(
        (
            "cold start ms",
            f"FastAPI + Mangum ({', '.join(ROUTE_LABELS[route] for route in fastapi['by_route'])})",
            f"{fastapi['median_ms']:.0f} ({fastapi['import_median_ms']:.0f} + "
            f"{fastapi['first_median_ms']:.0f}) | {fastapi['p90_ms']:.0f}",
            f"{fastapi['samples']} samples",
            "",
            "",
            "",
        )
    )
    floor = cold.get("required_packages")
    if floor:
        out.append(
            (
                "cold start ms",
                "required packages alone, no route (bound)",
                f"{floor['median_ms']:.0f} ({floor['import_median_ms']:.0f} + call) | "
                f"{floor['p90_ms']:.0f}",
                compared,
                f"{floor['ratio']:.2f}x",
                "",
                "",
            )
        )
    return out


def _snapstart(cold: dict[str, Any]) -> list[Row]:
    """Per function: the simulated SnapStart restore against its own cold start."""
    target = TARGETS["snapstart_vs_cold"]
    out: list[Row] = []
    measured = [(name, r) for name, r in cold["functions"].items() if "snapstart" in r]
    for logical_id, r in sorted(measured, key=lambda item: -item[1]["snapstart"]["median_ms"]):
        restored = r["snapstart"]
        out.append(
            (
                "SnapStart restore ms",
                f"{logical_id.removesuffix('Function')} (hooks + 1st call)",
                f"{restored['median_ms']:.1f} ({restored['hooks_median_ms']:.1f} + "
                f"{restored['median_ms'] - restored['hooks_median_ms']:.1f}) | "
                f"{restored['p90_ms']:.1f}",
                f"cold {r['median_ms']:.0f} | {r['p90_ms']:.0f}",
                f"{restored['ratio']:.2f}x | {restored['p90_ratio']:.2f}x",
                f"<= {target}x",
                _verdict(restored["ratio"] <= target),
            )
        )
    return out


#: What each way of reading a secret is, in the table.
SECRET_READS: Final = {
    "sdk": "AWS SDK (import, client, call)",
    "sdk, modules primed": "AWS SDK, modules primed (SnapStart)",
    "extension": "Parameters and Secrets extension",
}


def _secret_read(cold: dict[str, Any]) -> list[Row]:
    """The first secret read of a cold function (on AWS, on top of its cold start), each way,
    against the FastAPI app's whole cold start; no target."""
    found = cold.get("secret_read")
    if not found:
        return []
    reference = cold["fastapi"]["median_ms"]
    return [
        (
            "1st secret read ms",
            SECRET_READS.get(name, name),
            f"{r['median_ms']:.1f} | {r['p90_ms']:.1f}",
            f"FastAPI cold {reference:.0f}",
            f"+{r['median_ms'] / reference:.2f}x",
            "",
            "",
        )
        for name, r in found["variants"].items()
    ]


def _importtime(cold: dict[str, Any]) -> list[Row]:
    profile = cold.get("importtime")
    if not profile:
        return []
    total = profile["total_ms"]
    shown = list(profile["packages_ms"].items())[:IMPORTTIME_PACKAGES]
    rest = total - sum(ms for _, ms in shown)
    label = f"{profile['function'].removesuffix('Function')}, median of {profile['runs']}"
    return [
        (
            "importtime self ms",
            f"{name} ({label})" if n == 0 else name,
            f"{ms:.0f}",
            f"of {total:.0f}",
            f"{ms / total:.0%}",
            "",
            "",
        )
        for n, (name, ms) in enumerate([*shown, ("everything else", rest)])
    ]


def _imports(imports: dict[str, Any]) -> list[Row]:
    target = TARGETS["import_vs_copy"]
    copy = imports["copy"]
    out: list[Row] = []
    for label, case in imports["cases"].items():
        judged = label in imports["judged"]
        out.append(
            (
                "import rows/s",
                f"{label} ({imports['users']:,} users)",
                f"{case['rows_per_s']:,.0f}",
                f"COPY {copy['rows_per_s']:,.0f}",
                f"{case['vs_copy']:.2f}x",
                f">= {target}x" if judged else "",
                _verdict(case["vs_copy"] >= target) if judged else "",
            )
        )
    return out


def _statements(statements: dict[str, Any]) -> list[Row]:
    limit = TARGETS["statements_max"]
    out: list[Row] = []
    for route, r in statements["lists"].items():
        sizes = r["by_page_size"]
        out.append(
            (
                "SQL statements",
                f"{ROUTE_LABELS[route]} page size {' / '.join(map(str, sizes))}",
                " / ".join(str(sizes[size]["wire"]) for size in sizes),
                "items "
                + " / ".join(str(sizes[size]["items"]) for size in sizes)
                + "; round trips "
                + " / ".join(str(sizes[size]["round_trips"]) for size in sizes),
                "",
                f"equal, <= {limit}",
                _verdict(r["constant"] and r["max"] <= limit),
            )
        )
    return out


def _memory(memory: dict[str, Any]) -> list[Row]:
    limit = TARGETS["rss_mib"]
    out: list[Row] = []
    for route in (route for route in COMPARED if route in memory):
        layer, fastapi = memory[route]["layer"], memory[route]["fastapi"]
        out.append(
            (
                "peak RSS MiB",
                f"{ROUTE_LABELS[route]} ({layer['invocations']} calls)",
                f"{layer['maxrss_mib']:.1f}",
                f"FastAPI {fastapi['maxrss_mib']:.1f}",
                f"{layer['maxrss_mib'] / fastapi['maxrss_mib']:.2f}x",
                f"<= {limit:.0f}",
                _verdict(layer["maxrss_mib"] <= limit),
            )
        )
    return out


def _sizes(sizes: dict[str, Any]) -> list[Row]:
    limit = TARGETS["layer_mb"]
    layer_mb = sizes["layer"]["bytes"] / 1e6
    compared = []
    if "host_layer" in sizes:
        compared.append(f"host build {sizes['host_layer']['bytes'] / 1e6:.1f}")
    if "fastapi_layer" in sizes:
        compared.append(f"FastAPI deps {sizes['fastapi_layer']['bytes'] / 1e6:.1f}")
    return [
        (
            "layer MB unzipped",
            sizes["layer"]["source"],
            f"{layer_mb:.1f}",
            " | ".join(compared),
            "",
            f"<= {limit:.0f}",
            _verdict(layer_mb <= limit),
        )
    ]


#: Top-level packages shown in the ``-X importtime`` rows (the JSON has them all).
IMPORTTIME_PACKAGES: Final = 10

SECTIONS: Final[dict[str, Callable[[dict[str, Any]], list[Row]]]] = {
    "warm": _warm,
    "cold": _cold,
    "import": _imports,
    "statements": _statements,
    "memory": _memory,
    "sizes": _sizes,
}


def rows(results: dict[str, Any]) -> list[Row]:
    """The table's rows, from whichever parts were measured."""
    found: list[Row] = []
    for key, section in SECTIONS.items():
        if results.get(key):
            found.extend(section(results[key]))
            if key == "cold":  # what the slowest function's cold start is made of, just below
                found.extend(_importtime(results[key]))
                found.extend(_snapstart(results[key]))
                found.extend(_secret_read(results[key]))
    return found


def table(results: dict[str, Any]) -> str:
    """The whole report: a header line, the table, and the notes."""
    body = rows(results)
    widths = [max(len(row[i]) for row in [HEADERS, *body]) for i in range(len(HEADERS))]
    line = "  ".join("-" * w for w in widths)

    def render(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    lines = [results["meta"]["summary"], "", render(HEADERS), line]
    previous = None
    for row in body:
        if previous is not None and row[0] != previous:
            lines.append("")
        lines.append(render(row))
        previous = row[0]
    lines.append(line)
    lines.extend(results["meta"].get("notes", []))
    return "\n".join(lines)


def verdicts(results: dict[str, Any]) -> dict[str, int]:
    """How many targets passed and failed."""
    judged = [row[6] for row in rows(results) if row[6]]
    return {"PASS": judged.count("PASS"), "FAIL": judged.count("FAIL")}
