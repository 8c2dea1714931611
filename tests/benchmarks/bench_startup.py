"""What the plugin costs at start-up: the .pth hook in every Python process, and LLaMA-Factory's
start-up with and without our registration. Prints JSON.

    python tests/benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _wall(cmd: list[str], env: dict[str, str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _hook_import_us() -> int:
    """Cumulative import time of the hook module, from ``python -X importtime``."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True,
                            check=True)
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s+(\S.*)$", line)
        if match and match.group(3).strip() == "mede2_plugin._autoload":
            return int(match.group(2))  # cumulative: the package and the hook module
    raise RuntimeError("mede2_plugin._autoload was not imported at start-up: is the package installed?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    on = dict(os.environ)
    off = dict(os.environ, MEDE2_NO_AUTOLOAD="1")
    python_pass = [sys.executable, "-c", "pass"]
    lf_import = [sys.executable, "-c", "import llamafactory.data.loader"]
    lf_cli = [str(BIN / "llamafactory-cli"), "version"]
    result = {
        "hook_import_us": _hook_import_us(),
        "python_startup_s": round(_wall(python_pass, on, args.repeats), 4),
        "llamafactory_data_import_s": {"with_plugin": round(_wall(lf_import, on, args.repeats), 3),
                                       "without_plugin": round(_wall(lf_import, off, args.repeats), 3)},
        "llamafactory_cli_version_s": {"with_plugin": round(_wall(lf_cli, on, args.repeats), 3),
                                       "without_plugin": round(_wall(lf_cli, off, args.repeats), 3)},
        "repeats": args.repeats,
    }
    for key in ("llamafactory_data_import_s", "llamafactory_cli_version_s"):
        result[key]["ratio"] = round(result[key]["with_plugin"] / result[key]["without_plugin"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
