package freeport_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/finsvc/finance/pkg/freeport"
)

// The picked ports are below the ephemeral range and can be listened on.
func TestAddrsAreFreeAndBelowTheEphemeralRange(t *testing.T) {
	for _, n := range []int{1, 5} {
		addr, err := freeport.Addrs(n)
		if err != nil {
			t.Fatal(err)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("Addrs(%d) = %q, want 127.0.0.1:port", n, addr)
		}
		base, _ := strconv.Atoi(port)
		if base < 20000 || base+n > 32768 {
			t.Errorf("Addrs(%d) = %q: want ports in 20000..32767 (below the default ephemeral range)", n, addr)
		}
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
			if err != nil {
				t.Fatalf("Addrs(%d) = %q, but port %d cannot be listened on: %v", n, addr, p, err)
			}
			l.Close()
		}
	}
}

// Asking for no port is an error, not a random address.
func TestAddrsRefusesZero(t *testing.T) {
	if a, err := freeport.Addrs(0); err == nil {
		t.Errorf("Addrs(0) = %q, want an error", a)
	}
}

// A process never gets the same port twice, though each is closed again
// before the next pick: 2,000 picks among some 12,000 ports would repeat
// one about 150 times by chance.
func TestAddrsNeverRepeatsAPort(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		a, err := freeport.Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
	}
}
