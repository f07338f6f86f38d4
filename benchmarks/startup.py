"""Whole-process start-up of attncomp-codec: wall time (median) and peak RSS of each call, next to `import torch`.

A one-image call cannot be faster than importing torch, so each time is also given as a
ratio to that baseline. The runs are interleaved (every case once, then again …) so that a
busy machine slows them alike. Also timed: `import compressai.models` as CompressAI's own
__init__ has it and after attncomp's adapter (attncomp/compressai_adapter.py), which is
what the adapter saves each process.

    python benchmarks/startup.py [--image examples/kodim23.png] [--repeat 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODEC = [sys.executable, "-m", "attncomp.cli.codec"]
PYTHON = [sys.executable, "-c"]


def run(argv, expect: int) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one process, checked to exit with ``expect``."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != expect:
            err.seek(0)
            raise SystemExit(f"{' '.join(map(str, argv))} exited {process.returncode}:\n{err.read().decode()}")
    return seconds, usage.ru_maxrss / 1024  # Linux: kilobytes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=str(Path(__file__).parent.parent / "examples" / "kodim23.png"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stream, decoded = Path(tmp, "a.atc"), Path(tmp, "a.png")
        subprocess.run([*CODEC, "encode", args.image, stream], check=True, capture_output=True)  # for info/decode
        cases = {  # name: (argv, exit status)
            "python -c 'import torch' (baseline)": ([*PYTHON, "import torch"], 0),
            "attncomp-codec --help": ([*CODEC, "--help"], 0),
            "error: missing input": ([*CODEC, "encode", Path(tmp, "missing.png"), Path(tmp, "b.atc")], 1),
            "error: output exists": ([*CODEC, "encode", args.image, stream], 1),
            "attncomp-codec info": ([*CODEC, "info", stream], 0),
            f"encode {Path(args.image).name}": ([*CODEC, "encode", args.image, stream, "--force"], 0),
            f"decode {Path(args.image).name}": ([*CODEC, "decode", stream, decoded, "--force"], 0),
            "import compressai.models (plain)": ([*PYTHON, "import compressai.models"], 0),
            "import compressai.models (adapter)": ([*PYTHON, "import attncomp, compressai.models"], 0),
        }
        results = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, (argv, expect) in cases.items():
                results[name].append(run(argv, expect))
    baseline = statistics.median(s for s, _ in results["python -c 'import torch' (baseline)"])
    print(f"{'process':<40} {'median s':>9} {'× torch':>8} {'peak RSS MB':>12}   ({args.repeat} runs each)")
    for name, runs in results.items():
        seconds = statistics.median(s for s, _ in runs)
        print(f"{name:<40} {seconds:>9.2f} {seconds / baseline:>8.2f} {max(m for _, m in runs):>12.0f}")


if __name__ == "__main__":
    main()
