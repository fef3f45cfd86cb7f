#!/usr/bin/env bash
# PostgreSQL's CPU by client while a command runs: which service's
# statements the server spends its time on (docs/loadtest.md, "Where
# PostgreSQL's CPU goes").
#
#   loadtest/pg-by-client.sh bin/loadtest run --scenario mixed --target pipeline ...
#
# It reads every backend's CPU time (/proc/<pid>/stat, user + system) with its
# application_name from pg_stat_activity before and after the command, and
# prints the difference per application_name and database, largest first. A
# backend that started during the command counts whole; one that ended during
# it is missed (short connections: psql, the load generator's samples). The
# server must run on this machine. PGURL names it (default: the local
# server, user postgres). Spaces in a name (a backend without an
# application_name is named by its type, "client backend") become _.
set -euo pipefail

if [ $# -eq 0 ]; then
	echo "usage: loadtest/pg-by-client.sh COMMAND [ARGS...]" >&2
	exit 2
fi
url=${PGURL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
ticks=$(getconf CLK_TCK)

# snapshot prints "pid client cpu_ticks" for every backend it can read.
snapshot() {
	psql "$url" -Atc "SELECT pid, replace(coalesce(nullif(application_name, ''), backend_type), ' ', '_') || '/' || coalesce(datname, '-')
	                  FROM pg_stat_activity" |
		while IFS='|' read -r pid client; do
			if t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null); then
				echo "$pid $client $t"
			fi
		done
}

before=$(mktemp)
after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
snapshot >"$before"
"$@"
snapshot >"$after"

echo
echo "PostgreSQL CPU by client while the command ran (seconds):"
awk -v hz="$ticks" 'NR == FNR { start[$1] = $3; next }
	{ used[$2] += $3 - (($1 in start) ? start[$1] : 0) }
	END { for (c in used) if (used[c] > 0) printf "%-40s %8.2f\n", c, used[c] / hz }' "$before" "$after" |
	sort -k2 -nr
