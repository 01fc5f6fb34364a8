"""``python -m bench.rss CMD...``: run CMD, then print its peak RSS in KiB and the CPU seconds it
used (user and system, its children included) as stderr's last line.

Linux keeps ``ru_maxrss`` across fork and exec, so a child forked from a big process (the bench
parent, after making 100 MP inputs) reports the parent's size if it is larger than its own.
Forking from this small process instead bounds that error to this process's ~10 MB.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> None:
    process = subprocess.Popen(sys.argv[1:])
    _, status, usage = os.wait4(process.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"peak_rss_kib={usage.ru_maxrss} cpu_seconds={cpu:.6f}", file=sys.stderr)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
