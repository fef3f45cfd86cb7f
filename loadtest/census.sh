#!/usr/bin/env bash
# census.sh: what the pipeline writes to PostgreSQL per payment.
#
#   make build && loadtest/census.sh                 # 2,000 payments, binaries from bin/
#   BIN_DIR=/tmp/before/bin N=2000 loadtest/census.sh
#
# Starts a private PostgreSQL 15 (initdb into a temp folder, a free port,
# pg_stat_statements preloaded with track=all, trust auth) and the whole
# stack from BIN_DIR with `devstack run` on free ports, seeds N load-test
# users, resets the statistics once the stack is ready, pushes N payments
# through `loadtest run --scenario burst` (RATE per second) and waits until
# all are final (the load test's drain). Then it prints, per payment, in
# Markdown: every statement the services issued at least 0.01 times per
# payment, or that touched 0.01 rows or wrote 1 WAL byte per payment (calls,
# rows, WAL records and bytes, execution time, plans and planning time, from pg_stat_statements; nested foreign-key
# checks listed apart, their WAL already in their statement's),
# their totals, pg_stat_wal's totals and the database's committed
# transactions (pg_stat_database). Everything it started is stopped on exit.
#
# The load generator and this script connect as another role (census), so
# pg_stat_statements, which knows the user but not the application, counts
# the services' statements alone; pg_stat_wal and pg_stat_database count
# everything, the generator's sampling and checker reads included.
#
# Environment: BIN_DIR (bin), N (2000), RATE (1000 payments/s), and any
# setting devstack passes to the services (e.g. PROCESSOR_API=as-is with
# SIM_API=as-is). KEEP=1 keeps the temp folder (logs) after the run.
set -euo pipefail

cd "$(dirname "$0")/.."
bin=$(realpath "${BIN_DIR:-bin}")
n=${N:-2000}
rate=${RATE:-1000}
pgbin=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
for b in devstack financectl loadtest gateway outbox-relay dispatcher status-consumer processor-sim devkafka; do
	[ -x "$bin/$b" ] || { echo "census: $bin/$b not found (make build, or BIN_DIR=...)" >&2; exit 2; }
done
command -v psql >/dev/null || { echo "census: psql not found" >&2; exit 2; }

tmp=$(mktemp -d /tmp/census.XXXXXX)
chmod 755 "$tmp"
pids=()
pgdata=$tmp/pg
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do
		kill -INT "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$p" 2>/dev/null || true
	done
	[ -f "$pgdata/postmaster.pid" ] && asuser "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
	if [ "${KEEP:-}" = 1 ] || [ $rc -ne 0 ]; then echo "census: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# initdb and postgres refuse to run as root.
asuser() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# freeport prints a TCP port nothing on 127.0.0.1 listens on (nor one
# handed out before by this script).
taken=" "
freeport() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768-), where connections take their local ports
		case $taken in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			taken="$taken$p "
			echo "$p"
			return
		fi
	done
}

pgport=$(freeport)
[ "$(id -u)" = 0 ] && chown postgres "$tmp"
asuser "$pgbin/initdb" -D "$pgdata" -U postgres -A trust --no-sync -E UTF8 >"$tmp/initdb.log" 2>&1
asuser "$pgbin/pg_ctl" -D "$pgdata" -l "$tmp/postgres.log" -w start -o "-p $pgport -k $tmp -c listen_addresses=127.0.0.1 \
	-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c pg_stat_statements.max=10000 -c pg_stat_statements.track_planning=on \
	-c max_connections=300 -c checkpoint_timeout=1h -c max_wal_size=8GB" >/dev/null
server=postgres://postgres@127.0.0.1:$pgport
admin() { psql -X -q -v ON_ERROR_STOP=1 "$server/postgres?sslmode=disable" "$@"; }
admin -c "CREATE ROLE census LOGIN SUPERUSER" -c "CREATE DATABASE finance"
db=$server/finance?sslmode=disable
census_db=postgres://census@127.0.0.1:$pgport/finance?sslmode=disable
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$census_db" "$@"; }
q -c "CREATE EXTENSION pg_stat_statements"

gw=127.0.0.1:$(freeport)
sim=127.0.0.1:$(freeport)
export FINANCE_DEV_MODE=true DATABASE_URL=$db DEVSTACK_QUIET=true BIN_DIR=$bin STATE_DIR=$tmp/state \
	GATEWAY_ADDR=$gw SIM_ADDR=$sim KAFKA_ADDR=127.0.0.1:$(freeport) \
	DISPATCHER_OPS_ADDR=127.0.0.1:$(freeport) RELAY_OPS_ADDR=127.0.0.1:$(freeport) STATUS_OPS_ADDR=127.0.0.1:$(freeport)
"$bin/devstack" run >"$tmp/devstack.log" 2>&1 &
pids+=($!)
for _ in $(seq 240); do
	grep -q 'Finance Service is running' "$tmp/devstack.log" && break
	kill -0 "${pids[0]}" 2>/dev/null || { cat "$tmp/devstack.log" >&2; echo "census: devstack exited" >&2; exit 1; }
	sleep 0.5
done
grep -q 'Finance Service is running' "$tmp/devstack.log" || { echo "census: the stack did not start in 120 s" >&2; exit 1; }
"$bin/financectl" seed --users "$n" >"$tmp/seed.log" 2>&1

# Start from the same state each time: a checkpoint (so every page's first
# change after it writes a full-page image, in every run alike), then zeroes.
sleep 2
q -c "CHECKPOINT" -c "SELECT pg_stat_statements_reset()" -c "SELECT pg_stat_reset_shared('wal')" -c "SELECT pg_stat_reset()" >/dev/null
start=$(date -u +%FT%TZ)

set +e
"$bin/loadtest" run --scenario burst --target pipeline --users "$n" --rate "$rate" \
	--duration "$((n * 1000 / rate))ms" --url "http://$gw" --processor-url "http://$sim" \
	--database-url "$census_db" --quiet --out "$tmp/loadtest" >"$tmp/loadtest.log" 2>&1
lt_rc=$?
set -e
# Backends send their transaction and WAL counters at most every second
# while busy and within 10 s once idle.
sleep 11

final=$(q -c "SELECT count(*) FROM payments WHERE status IN ('succeeded', 'failed') AND created_at >= '$start'")
open=$(q -c "SELECT count(*) FROM payments WHERE status NOT IN ('succeeded', 'failed')")

q -v n="$n" <<'SQL'
\pset footer off
\pset format unaligned
\pset tuples_only on
WITH s AS (
    SELECT regexp_replace(query, '\s+', ' ', 'g') AS query, bool_or(toplevel) AS toplevel, sum(calls) AS calls,
           sum(rows) AS rows, sum(wal_records) AS wal_records, sum(wal_fpi) AS wal_fpi, sum(wal_bytes) AS wal_bytes,
           sum(total_exec_time) AS exec_ms, sum(plans) AS plans, sum(total_plan_time) AS plan_ms
    FROM pg_stat_statements
    WHERE userid <> (SELECT oid FROM pg_roles WHERE rolname = 'census')
      AND dbid = (SELECT oid FROM pg_database WHERE datname = 'finance')
    GROUP BY 1
), named AS (
    -- Who issued it, recognised by its text (pg_stat_statements knows the
    -- user, not the application_name).
    SELECT *, CASE
        WHEN NOT toplevel THEN 'nested (FK check)'
        WHEN query ~* '^(begin|commit|rollback)' THEN 'all'
        WHEN query ~ 'dispatch_claims' THEN 'dispatcher'
        WHEN query ~ '^(SELECT id, topic, key, payload FROM outbox|DELETE FROM outbox)'
          OR query ~ 'FROM outbox' AND query !~ 'INSERT' THEN 'outbox-relay'
        WHEN query ~ '^INSERT INTO (payments|outbox) |pg_notify|balance - held|w.held \+ v.hold|SELECT id FROM merchants|idempotency_key, request_hash|AS t\(p, u, s\)' THEN 'gateway'
        WHEN query ~ 'entries|payment_transitions|UPDATE payments|UPDATE wallets|FOR UPDATE|t.user_seq' THEN 'status-consumer'
        ELSE '' END AS service
    FROM s
)
SELECT '| statement | by | calls | rows | WAL records | WAL FPI | WAL bytes | execution µs | plans | planning µs |' || E'\n' || '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|' || E'\n' ||
       string_agg(format('| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s |',
                         replace(CASE WHEN length(query) > 80 THEN left(query, 79) || '…' ELSE query END, '|', '\|'), service,
                         round(calls / :n::numeric, 2), round(rows / :n::numeric, 2), round(wal_records / :n::numeric, 2), round(wal_fpi / :n::numeric, 2), round(wal_bytes / :n::numeric, 0),
                         round((exec_ms * 1000 / :n)::numeric, 1), round(plans / :n::numeric, 2), round((plan_ms * 1000 / :n)::numeric, 1)),
                  E'\n' ORDER BY toplevel DESC, wal_bytes DESC, calls DESC) || E'\n' ||
       (SELECT format('| **all top-level statements of the services** | | **%s** | **%s** | **%s** | **%s** | **%s** | **%s** | **%s** | **%s** |',
                      round(sum(calls) / :n::numeric, 2), round(sum(rows) / :n::numeric, 2), round(sum(wal_records) / :n::numeric, 2),
                      round(sum(wal_fpi) / :n::numeric, 2), round(sum(wal_bytes) / :n::numeric, 0), round((sum(exec_ms) * 1000 / :n)::numeric, 1),
                      round(sum(plans) / :n::numeric, 2), round((sum(plan_ms) * 1000 / :n)::numeric, 1))
        FROM s WHERE toplevel) || E'\n' ||
       (SELECT format('| of which BEGIN / COMMIT / ROLLBACK | | %s / %s / %s | | | | | | | |',
                      round(coalesce(sum(calls) FILTER (WHERE query ~* '^begin'), 0) / :n::numeric, 2),
                      round(coalesce(sum(calls) FILTER (WHERE query ~* '^commit'), 0) / :n::numeric, 2),
                      round(coalesce(sum(calls) FILTER (WHERE query ~* '^rollback'), 0) / :n::numeric, 2))
        FROM s)
-- Batched statements (the gateway's group commit, the relay's delete) run
-- far less than once per payment but write most of the WAL: a statement is
-- shown when it runs, touches a row or writes a WAL byte often enough.
FROM named WHERE calls >= 0.01 * :n OR rows >= 0.01 * :n OR wal_bytes >= :n;
SELECT '';
SELECT '| per payment | value |' || E'\n' || '|---|--:|' || E'\n' ||
       format('| pg_stat_wal wal_records | %s |', round(wal_records / :n::numeric, 2)) || E'\n' ||
       format('| pg_stat_wal wal_fpi (full-page images) | %s |', round(wal_fpi / :n::numeric, 2)) || E'\n' ||
       format('| pg_stat_wal wal_bytes | %s |', round(wal_bytes / :n::numeric, 0)) || E'\n' ||
       (SELECT format('| pg_stat_database xact_commit (finance) | %s |', round(xact_commit / :n::numeric, 2)) || E'\n' ||
               format('| pg_stat_database xact_rollback (finance) | %s |', round(xact_rollback / :n::numeric, 2)) || E'\n' ||
               format('| tuples inserted / updated / deleted | %s / %s / %s |',
                      round(tup_inserted / :n::numeric, 2), round(tup_updated / :n::numeric, 2), round(tup_deleted / :n::numeric, 2))
        FROM pg_stat_database WHERE datname = 'finance')
FROM pg_stat_wal;
SQL
echo
echo "census: $n payments ($final final since the reset, $open open) at $rate/s, binaries $bin, $(nproc) cores; loadtest exit $lt_rc ($(grep -m1 -oE 'PASSED|FAILED' "$tmp/loadtest/summary.md" 2>/dev/null || echo 'no summary'))"
[ "$lt_rc" = 0 ] || { tail -20 "$tmp/loadtest.log" >&2; exit 1; }
