#!/usr/bin/env bash
# run-session.sh: every load test of docs/loadtest.md, one after the other,
# against a running pipeline (devstack) and a running as-is service.
#
#   DEVSTACK_QUIET=true bin/devstack run &
#   FINANCE_DEV_MODE=true bin/financectl seed --users 10000
#   bin/legacy migrate && bin/legacy seed --users 10000 && bin/legacy &
#   loadtest/run-session.sh /tmp/m8          # about 20 minutes
#   bin/loadtest table /tmp/m8/*/
#
# Runs: burst on both targets; the burst's 10,000 payments at 1,000, 2,000
# and 4,000/s on the pipeline; the burst with the pipeline's workers paused
# (the acceptance path alone); burst-poll on the pipeline (it has no as-is
# form); read-heavy, mixed and outage on both targets.
# Each run writes OUT/<name>/{results.json,summary.md,*.png}.
set -euo pipefail

out=${1:?usage: loadtest/run-session.sh OUT_DIR}
cd "$(dirname "$0")/.."
export FINANCE_DEV_MODE=true
lt=bin/loadtest
[ -x "$lt" ] || { echo "run-session: $lt not found; go build -o bin/loadtest ./loadtest" >&2; exit 2; }

metrics=dispatcher=http://127.0.0.1:9101/metrics,outbox-relay=http://127.0.0.1:9102/metrics,status-consumer=http://127.0.0.1:9103/metrics
pipeline=(--target pipeline --metrics "$metrics" --local-cpu postgres,devkafka --quiet)
legacy=(--target legacy --local-cpu postgres --quiet)

# Every run stops by itself; timeout only guards against a hang.
run() { local name=$1; shift; timeout 900 "$lt" run "$@" --out "$out/$name" || true; }

run burst-pipeline --scenario burst "${pipeline[@]}"
run burst-legacy --scenario burst "${legacy[@]}"
for r in 1000 2000 4000; do
	run "burst-pipeline-r$r" --scenario burst --rate "$r" --duration "$((10000000 / r))ms" "${pipeline[@]}"
done

# The acceptance path alone: the relay, dispatcher, status consumer and the
# periodic jobs are paused (SIGSTOP) until the gateway has accepted all
# 10,000 payments, then resumed (SIGCONT) and drained as usual. The
# simulator keeps running (the load generator reads its settings).
workers=$(pgrep -f 'bin/(outbox-relay|dispatcher|status-consumer|financectl)( |$)' | tr '\n' ' ')
accepted() {
	curl -s http://127.0.0.1:8080/metrics | awk '/^gateway_payments_accepted_total\{api="v1"\}/ {v = $2} END {printf "%d", v + 0}'
}
base=$(accepted)
kill -STOP $workers
trap 'kill -CONT $workers 2>/dev/null' EXIT
run burst-pipeline-isolated --scenario burst --target pipeline --local-cpu postgres,devkafka --quiet &
lt_pid=$!
for _ in $(seq 600); do
	[ $(($(accepted) - base)) -ge 10000 ] && break
	sleep 0.1
done
kill -CONT $workers
wait $lt_pid

run burst-poll-pipeline --scenario burst-poll "${pipeline[@]}"

for s in read-heavy mixed outage; do
	run "$s-pipeline" --scenario "$s" "${pipeline[@]}"
	run "$s-legacy" --scenario "$s" "${legacy[@]}"
done
echo "run-session: done; bin/loadtest table $out/*/"
