#!/usr/bin/env bash
# `make test-stress`: `make test` while a CPU hog keeps one of the two cores busy, as on a CI
# runner or a laptop doing other work. Every test must stay green: a test that fails only
# on a busy machine has a race to find, not a timeout to raise.
#
#   LC_STRESS_RUNS=N   runs in a row (default 1); each run's output in $LC_STATE/stress/
#   LC_STRESS_CPUS=N   CPU hog workers (default 1)
#
# Prints one line per run (result, test counts, time) and, for a failing run, the failing
# tests, their messages (with any seed to replay) and where the logs are.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LC_REPO"

apt_install stress-ng
runs="${LC_STRESS_RUNS:-1}"
cpus="${LC_STRESS_CPUS:-1}"
out="$LC_STATE/stress"
mkdir -p "$out"

log "CPU hog: stress-ng --cpu $cpus (until the runs end)"
# In a session of its own, as other work on the machine is: where the kernel shares CPU time
# between sessions first (sched_autogroup), a hog in test.sh's session would only compete
# with what runs there, not with test.sh's lanes, which have sessions of their own.
setsid stress-ng --cpu "$cpus" --timeout 0 --quiet &
hog=$!
trap 'kill -- "-$hog" 2>/dev/null || true; wait "$hog" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

failed=0
report=()
for run in $(seq 1 "$runs"); do
  output="$out/run-$run.log"
  log "run $run of $runs (output: $output)"
  start=$SECONDS
  set +e
  bash e2e/scripts/test.sh 2>&1 | tee "$output"
  rc=${PIPESTATUS[0]}
  set -e
  took=$((SECONDS - start))
  summary=$(grep -a '^summary:' "$output" | tail -n1 || true)
  if [ "$rc" = 0 ]; then
    report+=("run $run: passed in ${took}s — ${summary:-no summary}")
  else
    failed=$((failed + 1))
    report+=("run $run: FAILED (exit $rc) in ${took}s — ${summary:-no summary}; output: $output")
    {
      echo "--- run $run: failing tests"
      grep -a -E '^test .* FAILED$|^error: test failed' "$output" || true
      echo "--- run $run: failure messages (seeds to replay are printed by the tests)"
      awk '/^---- .* stdout ----$/ {on=1} on {print} /^failures:$/ && on {on=0}' "$output" | tail -n 200
      echo "--- logs: $LC_STATE (services, cluster: 'bash e2e/scripts/cluster.sh logs'), e2e pod logs under ${TMPDIR:-/tmp}/<namespace>/"
    } | tee -a "$out/failures.log" >&2
  fi
done

echo
echo "test-stress: $runs run(s) with $cpus core(s) busy"
printf '  %s\n' "${report[@]}"
[ "$failed" = 0 ] || die "$failed of $runs run(s) failed; details above and in $out/failures.log."
