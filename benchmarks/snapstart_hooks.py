"""What the SnapStart hooks save: ``python -m benchmarks.snapstart_hooks [--samples N] [ID ...]``.

For each function (logical ids; default a few of each kind), fresh processes as ``make bench-cold``
starts them, each importing the function and forking (the simulated restore, see ``cold_child``):
with the layer's hooks (before-snapshot work, then the after-restore hooks in the fork) and as a
bare fork of the imported process, samples interleaved. Prints the median of "after-restore hooks
+ first invocation" for both, and the before-snapshot work, which a real snapshot pays once per
deployment. Needs ``make bench-build`` (the host build) first.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from benchmarks import cold
from benchmarks.cold_events import SIGNING_KEY, Fixtures, cold_event, succeeded
from benchmarks.harness import UdpSink, lambda_environment, start_world

DEFAULT: tuple[str, ...] = (
    "GetUserFunction",
    "GetPostFunction",
    "ListPostsFunction",
    "CreatePostFunction",
    "AuthorizerFunction",
)


def main(argv: list[str] | None = None) -> int:
    """Measure and print one line per function."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.snapstart_hooks")
    parser.add_argument("functions", nargs="*", default=list(DEFAULT))
    parser.add_argument("--samples", type=int, default=9)
    args = parser.parse_args(argv)
    python = cold.find_python313(None)
    host, _ = cold.host_build()
    packages = cold.function_packages(host, cold.lambda_runtime(python))
    world, sink = start_world(), UdpSink()
    try:
        fixtures = Fixtures(world.plain_url, world.seed)
        results: dict[str, dict[bool, list[dict[str, Any]]]] = {
            name: {True: [], False: []} for name in args.functions
        }
        for _ in range(args.samples):
            for name in args.functions:
                env = {
                    **lambda_environment(name, host, world.database_env(), sink.address),
                    "JWT_SIGNING_KEY": SIGNING_KEY,
                }
                for hooks in (True, False):
                    result = cold.run_child(
                        python, packages[name], [cold_event(name, fixtures, fixtures.round())],
                        env, snapstart=True, hooks=hooks,
                    )  # fmt: skip
                    if not succeeded(name, result["statuses"]):
                        raise RuntimeError(f"{name}: statuses {result['statuses']}")
                    results[name][hooks].append(result)
        for name, by_variant in results.items():
            hooked, bare = (
                statistics.median(1000 * r["restored_s"] for r in by_variant[variant])
                for variant in (True, False)
            )
            before = statistics.median(1000 * r["before_snapshot_s"] for r in by_variant[True])
            print(
                f"{name}: hooks + first call {hooked:.1f} ms, bare fork first call {bare:.1f} ms "
                f"({bare - hooked:+.1f} ms without the hooks); before-snapshot work "
                f"{before:.1f} ms; {args.samples} samples each"
            )
    finally:
        sink.close()
        world.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
