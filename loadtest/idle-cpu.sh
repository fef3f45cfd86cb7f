#!/usr/bin/env bash
# CPU used by every process of this machine over a window, summed by command
# name: what an idle stack costs (docs/loadtest.md, "Two idle costs").
#
#   loadtest/idle-cpu.sh [SECONDS]     # default 30
#
# It reads user + system time of every process from /proc at the start and at
# the end of the window and prints, per command name (postgres, devkafka,
# status-consumer, ...), the CPU-seconds used and the share of one core, the
# largest first. A process that starts or ends inside the window is missed.
set -euo pipefail

window=${1:-30}
case $window in
'' | *[!0-9]*)
	echo "usage: loadtest/idle-cpu.sh [SECONDS]: SECONDS must be a whole number" >&2
	exit 2
	;;
esac
ticks=$(getconf CLK_TCK)

# snapshot prints "pid name cpu_ticks" for every process it can read.
snapshot() {
	for stat in /proc/[0-9]*/stat; do
		# The name is field 2, in parentheses; it may hold spaces.
		awk '{ line = $0; name = substr(line, index(line, "(") + 1); name = substr(name, 1, index(name, ")") - 1)
		       gsub(/ /, "_", name); rest = substr(line, index(line, ")") + 2); split(rest, f, " ")
		       print $1, name, f[12] + f[13] }' "$stat" 2>/dev/null || true
	done
}

before=$(mktemp)
trap 'rm -f "$before"' EXIT
snapshot >"$before"
sleep "$window"
snapshot | awk -v hz="$ticks" -v w="$window" 'NR == FNR { start[$1] = $3; next }
	($1 in start) { used[$2] += $3 - start[$1] }
	END { for (n in used) if (used[n] > 0) printf "%-24s %7.2f CPU-s %6.1f%% of a core\n", n, used[n] / hz, used[n] / hz / w * 100 }' "$before" - |
	sort -k2 -nr
