"""Shared by the benchmark scripts: run a command as the benchmark user and measure it.

measure(cmd) returns (wall seconds, CPU seconds of the whole process tree from wait4, peak
resident memory in MB summed over the tree, sampled from /proc every 10 ms). pgBackRest forks
local worker processes, so summing over the tree is what makes the two tools comparable; the
kernel's own high-water mark of the largest single process (exact for pgkeep, one process) also
catches a short peak between two samples. With BENCH_COLD_EFFECTIVE=1 the page cache is dropped
before every run.
"""
import os
import pwd
import subprocess
import time

COLD = os.environ.get("BENCH_COLD_EFFECTIVE") == "1"


def run_as(user):
    """Popen/run keyword arguments that run a command as `user` when we are root."""
    pw = pwd.getpwnam(user)
    return dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[]) if os.getuid() == 0 else {}


def tree(root):
    """pids of root and all its descendants"""
    children = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(p))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd, as_user):
    """wall, cpu (user+sys of the tree, via wait4), peak summed rss (MB)"""
    if COLD:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **as_user)
    peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid != 0:
            break
        peak = max(peak, sum(rss_kb(p) for p in tree(proc.pid)))
        time.sleep(0.01)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{err}")
    peak = max(peak, usage.ru_maxrss)
    return wall, usage.ru_utime + usage.ru_stime, peak / 1024.0
