"""One fresh execution environment: ``python3.13 -I -S -B cold_child.py RESULT_FILE < job``.

Run by :mod:`benchmarks.cold` in a new interpreter per sample, with nothing on ``sys.path`` but
the job's folders (the function's, then the layer's, as Lambda orders ``/var/task`` and
``/opt/python``) and the standard library; ``-B`` because Lambda's file systems are read-only,
so only ``.pyc`` files shipped in the build are used. Imports the handler's module, invokes it
on each event of the job, and writes timings, statuses and peak RSS to ``RESULT_FILE``. With
``"snapstart": true`` in the job it simulates a SnapStart restore instead: after the import it runs
the layer's before-snapshot hooks, forks (the fork is the restored environment), and times in the
fork the after-restore hooks and the first invocation (``restored_s``). Uses only
the standard library (``json``, ``importlib`` and ``resource`` are loaded before the clock
starts, as the Lambda runtime has loaded such modules before it imports a handler).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
from typing import Any


def _hex(size: int) -> str:
    # Not uuid or secrets: importing them here would spare the code under test their import.
    return os.urandom(size).hex()


ARN_PREFIX = "arn:aws:lambda:eu-west-1:123456789012:function"


class Context:
    """The parts of Lambda's context object that handlers and Powertools read."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"))
        self.invoked_function_arn = f"{ARN_PREFIX}:{function_name}"
        self.aws_request_id = _hex(16)
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "bench"
        self._deadline = time.monotonic() + 10

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (emulated) timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _peak_rss_kib() -> int:
    """Peak resident set size of this process image, in KiB.

    ``VmHWM`` where there is procfs: ``ru_maxrss`` would also count the parent's peak, since
    a child forked with vfork (as subprocess does) shares, until exec, its parent's memory.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _outcome(response: dict[str, Any]) -> str:
    """The status of an HTTP response; an authorizer's verdict; an SQS batch's failures."""
    if "statusCode" in response:
        return str(response["statusCode"])
    if "isAuthorized" in response:
        return "authorized" if response["isAuthorized"] else "denied"
    return f"{len(response.get('batchItemFailures', []))} failed"


def _invoke(handler: Any, event: dict[str, Any], name: str, sampled: int) -> dict[str, Any]:
    root = f"1-{int(time.time()):08x}-{_hex(12)}"
    os.environ["_X_AMZN_TRACE_ID"] = f"Root={root};Parent={_hex(8)};Sampled={sampled}"
    response: dict[str, Any] = handler(event, Context(name))
    return response


def _restored(job: dict[str, Any], result_file: str, name: str, sampled: int) -> int:
    """Import, the before-snapshot hooks, then in a fork (the restore) the after-restore hooks and
    the first invocation."""
    started = time.perf_counter()
    module_name, handler_name = job["handler"].rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), handler_name)
    imported = time.perf_counter()
    hooks = sys.modules.get("blog.snapstart")
    if hooks is None:
        raise RuntimeError(f"{job['handler']} does not register the SnapStart hooks")
    run_hooks = job.get("hooks", True)  # False: a bare fork, to see what the hooks change
    if run_hooks:
        hooks.run_before_snapshot()
    snapshot = time.perf_counter()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the restored environment
        os.close(reader)
        os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
        cpu, restored = time.process_time(), time.perf_counter()
        if run_hooks:
            hooks.run_after_restore()
        hooked = time.perf_counter()
        response = _invoke(handler, job["events"][0], name, sampled)
        done = time.perf_counter()
        report = {
            "after_restore_s": hooked - restored,
            "restored_s": done - restored,
            "restored_cpu_s": time.process_time() - cpu,
            "statuses": {_outcome(response): 1},
            "maxrss_kib": _peak_rss_kib(),
        }
        os.write(writer, json.dumps(report).encode())
        os._exit(0)
    os.close(writer)
    chunks = []
    while chunk := os.read(reader, 65536):
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not chunks:
        raise RuntimeError(f"the restored process failed (wait status {status})")
    result = json.loads(b"".join(chunks))
    result.update(
        import_s=imported - started,
        before_snapshot_s=snapshot - imported,
        modules=len(sys.modules),
    )
    with open(result_file, "w") as out:
        json.dump(result, out)
    return 0


def main(result_file: str) -> int:
    """Run the job read from stdin."""
    job: dict[str, Any] = json.loads(sys.stdin.read())
    sys.path[:0] = job["path"]
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "bench")
    sampled = int(bool(job.get("sampled", True)))
    if job.get("snapstart"):
        return _restored(job, result_file, name, sampled)
    # Under -X importtime: what the handler imports (and its first call) lies between these.
    marks = bool(job.get("marks"))
    if marks:
        print("bench-cold: start", file=sys.stderr, flush=True)
    cpu, started = time.process_time(), time.perf_counter()
    module_name, handler_name = job["handler"].rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), handler_name)
    imported = time.perf_counter()
    first, first_cpu = imported, cpu
    statuses: dict[str, int] = {}
    for n in range(job.get("invocations", 1)):
        response = _invoke(handler, job["events"][n % len(job["events"])], name, sampled)
        if n == 0:
            first, first_cpu = time.perf_counter(), time.process_time()
            if marks:
                print("bench-cold: end", file=sys.stderr, flush=True)
        status = _outcome(response)
        statuses[status] = statuses.get(status, 0) + 1
    done = time.perf_counter()
    result = {
        "import_s": imported - started,
        "first_invoke_s": first - imported,
        "cold_s": first - started,
        "cold_cpu_s": first_cpu - cpu,
        "all_s": done - started,
        "statuses": statuses,
        "maxrss_kib": _peak_rss_kib(),
        "modules": len(sys.modules),
    }
    with open(result_file, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
