package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// MaxURLLength bounds an endpoint's URL.
const MaxURLLength = 2048

// ErrRefusedAddress is a URL or connection to an address deliveries may not
// reach: private, loopback, link-local, multicast or unspecified, and not
// in the allowlist.
var ErrRefusedAddress = errors.New("webhook: refused address")

// Policy says which URLs endpoints may have and which addresses a delivery
// may connect to. Its zero value is the strictest: https only, public
// addresses only.
type Policy struct {
	// AllowHTTP permits http:// URLs (dev mode only).
	AllowHTTP bool
	// Allow lists the otherwise refused networks that are permitted (tests
	// and make run allow 127.0.0.0/8 and ::1/128).
	Allow []netip.Prefix
	// Resolver looks hosts up at registration (net.DefaultResolver when nil).
	Resolver *net.Resolver
}

// ParseAllowlist parses a comma-separated list of CIDR prefixes or single
// addresses.
func ParseAllowlist(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("allowlist entry %q: want a CIDR prefix or an address", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// cgnat is 100.64.0.0/10, shared address space: not public either.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// AddrAllowed tells whether a delivery may reach a.
func (p Policy) AddrAllowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, pre := range p.Allow {
		if pre.Contains(a) {
			return true
		}
	}
	refused := !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() ||
		a.IsUnspecified() || cgnat.Contains(a) || (a.Is4() && a.As4()[0] == 0)
	return !refused
}

// CheckURL validates an endpoint's URL at registration: absolute, https
// (or http when allowed), no credentials, and a host that resolves only to
// allowed addresses. The error says what is wrong, for a 422.
func (p Policy) CheckURL(ctx context.Context, raw string) (*url.URL, error) {
	if raw == "" || len(raw) > MaxURLLength {
		return nil, fmt.Errorf("url must be 1 to %d characters", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url does not parse: %v", err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.AllowHTTP:
	case u.Scheme == "http":
		return nil, errors.New("url must be https")
	default:
		return nil, fmt.Errorf("url scheme %q: want https", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("url has no host")
	}
	if u.User != nil {
		return nil, errors.New("url must not carry credentials")
	}
	if u.Fragment != "" {
		return nil, errors.New("url must not have a fragment")
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if !p.AddrAllowed(a) {
			return nil, fmt.Errorf("%w: %s is a private, loopback or link-local address", ErrRefusedAddress, a)
		}
		return u, nil
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("url host %q does not resolve: %v", host, err)
	}
	for _, a := range addrs {
		if !p.AddrAllowed(a) {
			return nil, fmt.Errorf("%w: %s resolves to %s, a private, loopback or link-local address", ErrRefusedAddress, host, a.Unmap())
		}
	}
	return u, nil
}

// Control is a net.Dialer Control hook that refuses to connect to an
// address the policy does not allow. It runs after the name was resolved,
// for the address actually dialled, so a name that resolved to a public
// address at registration and to a private one now (DNS rebinding) is
// refused.
func (p Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, address)
	}
	if !p.AddrAllowed(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, ap.Addr().Unmap())
	}
	return nil
}

// Client returns the HTTP client deliveries use: it connects only where
// the policy allows (Control, also for proxies: none is used), follows no
// redirect (a 3xx is the answer), and gives up on a request after timeout.
// maxConnsPerHost bounds the connections to one endpoint's host.
func (p Policy) Client(timeout time.Duration, maxConnsPerHost int) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: p.Control}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1000,
		MaxIdleConnsPerHost:   maxConnsPerHost,
		MaxConnsPerHost:       maxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
