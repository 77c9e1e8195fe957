package outbox

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// errRefusedAddress marks a delivery refused by the SSRF guard.
var errRefusedAddress = errors.New("refused address")

// guard decides which addresses webhooks may reach. It is immutable after
// construction and safe for concurrent use.
type guard struct {
	allowPrivate bool
	allowed      []netip.Prefix
}

func newGuard(cfg DeliveryConfig) (*guard, error) {
	g := &guard{allowPrivate: cfg.AllowPrivateNetworks}
	for _, n := range cfg.AllowedNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("allowed_networks: %q is not a CIDR such as \"10.0.0.0/8\"", n)
		}
		g.allowed = append(g.allowed, p.Masked())
	}
	return g, nil
}

var (
	cgnat     = netip.MustParsePrefix("100.64.0.0/10")
	thisNet   = netip.MustParsePrefix("0.0.0.0/8")
	reserved4 = netip.MustParsePrefix("240.0.0.0/4") // includes 255.255.255.255
	siteLocal = netip.MustParsePrefix("fec0::/10")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
)

// refusedKind names the range addr falls in, or "" when it is public.
func refusedKind(addr netip.Addr) string {
	addr = addr.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	if addr.Is6() && nat64.Contains(addr) {
		// NAT64 addresses embed an IPv4 address; judge that one.
		b := addr.As16()
		addr = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	switch {
	case addr.IsUnspecified() || thisNet.Contains(addr):
		return "unspecified"
	case addr.IsLoopback():
		return "loopback"
	case addr.IsPrivate():
		return "private (RFC 1918 or unique-local)"
	case cgnat.Contains(addr):
		return "shared address space (CGNAT 100.64.0.0/10)"
	case addr.IsLinkLocalUnicast():
		return "link-local (including cloud metadata 169.254.169.254)"
	case addr.IsMulticast():
		return "multicast"
	case reserved4.Contains(addr) || siteLocal.Contains(addr):
		return "reserved"
	}
	return ""
}

// check returns nil when addr may be dialed.
func (g *guard) check(addr netip.Addr) error {
	if g.allowPrivate {
		return nil
	}
	kind := refusedKind(addr)
	if kind == "" {
		return nil
	}
	for _, p := range g.allowed {
		if p.Contains(addr) || p.Contains(addr.Unmap()) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is a %s address; set delivery.allow_private_networks or add its network to delivery.allowed_networks to allow it", errRefusedAddress, addr, kind)
}

// control is a net.Dialer Control function: it runs after name resolution,
// on the address actually being dialed, so DNS answers cannot smuggle a
// private address past the check done at create time.
func (g *guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dialed address %q", errRefusedAddress, address)
	}
	return g.check(ap.Addr())
}

// checkURL validates a webhook URL: absolute http(s), and, unless private
// networks are allowed, neither localhost nor an IP literal in a refused
// range. Host names are checked again at dial time.
func (g *guard) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: url %q is not a URL: %v", ErrInvalid, raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: url %q must be absolute and start with http:// or https://", ErrInvalid, raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: url %q has no host", ErrInvalid, raw)
	}
	if u.User != nil {
		return fmt.Errorf("%w: url %q must not carry credentials; authenticate with the webhook signature instead", ErrInvalid, raw)
	}
	if addr, err := netip.ParseAddr(strings.TrimSuffix(host, ".")); err == nil {
		if err := g.check(addr); err != nil {
			return fmt.Errorf("%w: url %q: %v", ErrInvalid, raw, err)
		}
		return nil
	}
	if ip := net.ParseIP(host); ip != nil { // forms netip refuses, e.g. zones
		addr, _ := netip.AddrFromSlice(ip)
		if err := g.check(addr); err != nil {
			return fmt.Errorf("%w: url %q: %v", ErrInvalid, raw, err)
		}
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		if g.check(netip.MustParseAddr("127.0.0.1")) != nil {
			return fmt.Errorf("%w: url %q points at localhost; set delivery.allow_private_networks or add 127.0.0.0/8 to delivery.allowed_networks to allow it", ErrInvalid, raw)
		}
	}
	return nil
}
