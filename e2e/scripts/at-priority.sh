#!/usr/bin/env bash
# at-priority.sh N COMMAND [ARG...]: runs COMMAND at CPU priority nice N, in a session that
# the caller started for it (`setsid bash e2e/scripts/at-priority.sh 19 ...`).
#
# Where the kernel shares CPU time between sessions first (sched_autogroup, on by default in
# Debian's and Ubuntu's kernels), a nice value only ranks a process against the others of its
# session: a "nice 19" build in a session of its own weighs as much as the tests. So the
# session's own nice value (/proc/self/autogroup) is set to N as well. Only for a session of
# its own: it lowers every process of the session, the caller's shell included.
set -euo pipefail
n=$1
shift
# Raising a nice value needs no privilege; a kernel without autogroups has no such file.
if [ -e /proc/self/autogroup ]; then
  echo "$n" >/proc/self/autogroup 2>/dev/null || true
fi
exec nice -n "$n" "$@"
