// Package freeport picks loopback TCP ports for the processes that tests and
// the chaos run start, ports that another process must bind later.
//
// The usual trick, listening on port 0 and closing, returns a port from the
// kernel's ephemeral range, the range it also gives every outgoing
// connection its source port from. On a busy machine (make test runs many
// packages at once, each with PostgreSQL and Kafka clients) the port can be
// taken by some client's connection between the pick and the child's bind,
// and stay taken as long as that connection lives: the child then fails to
// listen at every restart. A port below the ephemeral range is never handed
// out that way, so freeport picks there, at random, and checks that nothing
// listens on it. It never hands out the same port twice in one process:
// a test that picks several ports before any is bound (the end-to-end
// test's Kafka and gateway ops addresses) would otherwise now and then get
// one port for two processes.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// given holds every port this process has handed out.
var given = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// lowest is the first port freeport uses: above the well-known and most
// registered service ports a developer's machine may run.
const lowest = 20000

// Addr returns a loopback address ("127.0.0.1:port") free a moment ago.
func Addr() (string, error) { return Addrs(1) }

// Addrs returns a loopback address whose port and the n-1 ports after it
// were all free a moment ago (a multi-broker devkafka takes consecutive ports).
func Addrs(n int) (string, error) {
	if n < 1 {
		return "", fmt.Errorf("freeport: want at least 1 port, got %d", n)
	}
	highest := ephemeralStart() - n
	if highest <= lowest {
		return "", fmt.Errorf("freeport: no room below the ephemeral ports for %d ports", n)
	}
	given.Lock()
	defer given.Unlock()
	for range 200 {
		base := lowest + rand.IntN(highest-lowest)
		if free(base, n) {
			for p := base; p < base+n; p++ {
				given.ports[p] = true
			}
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(base)), nil
		}
	}
	return "", fmt.Errorf("freeport: no %d consecutive free ports in %d..%d", n, lowest, highest)
}

// free reports whether ports base..base+n-1 were never handed out by this
// process and can all be listened on now. The caller holds given's lock.
func free(base, n int) bool {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		if given.ports[p] {
			return false
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		held = append(held, l)
	}
	return true
}

// ephemeralStart is the first port of Linux's ephemeral range; 32768, its
// default, where the range cannot be read.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(b))
	if len(fields) < 1 {
		return 32768
	}
	lo, err := strconv.Atoi(fields[0])
	if err != nil || lo <= lowest {
		return 32768
	}
	return lo
}
