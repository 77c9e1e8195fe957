package delivery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"code.dny.dev/ssrf"
)

// ErrRefusedAddress marks a delivery refused by the SSRF guard.
var ErrRefusedAddress = errors.New("refused address")

// ErrInvalid marks a webhook URL that CheckURL refuses; outbox.ErrInvalid
// is the same value, so that the admin API reports it as bad input.
var ErrInvalid = errors.New("invalid input")

// guard decides which addresses webhooks may reach. It is immutable after
// construction and safe for concurrent use.
type guard struct {
	allowPrivate bool
	allowed      []netip.Prefix
}

func newGuard(cfg Config) (*guard, error) {
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

// The refused ranges come from code.dny.dev/ssrf, whose tables are
// generated from the IANA IPv4 and IPv6 special-purpose address registries
// (loopback, private-use, shared CGNAT space, link-local, documentation
// TEST-NETs, benchmarking, IETF protocol assignments, 6to4, Teredo, AS112,
// multicast, reserved …), rather than kept by hand here. For IPv6 it refuses
// everything outside global unicast 2000::/3, which also covers
// IPv4-compatible ::a.b.c.d, unique-local fc00::/7, link-local fe80::/10,
// site-local and local-use NAT64 64:ff9b:1::/48. Both the create/update-time
// URL check and the dial-time check use refusedKind, so they cannot differ.
var (
	ipv4Refused = append(slices.Clone(ssrf.IPv4DeniedPrefixes),
		// Not special-purpose, but a cloud platform's host endpoint: the
		// Azure WireServer answers (and hands out secrets) to any VM.
		netip.MustParsePrefix("168.63.129.16/32"),
	)
	ipv6Refused = ssrf.IPv6DeniedPrefixes
	cgnat       = netip.MustParsePrefix("100.64.0.0/10")
	thisNet     = netip.MustParsePrefix("0.0.0.0/8")
	wireServer  = netip.MustParsePrefix("168.63.129.16/32")
	// The well-known NAT64 prefix embeds an IPv4 address; an IPv6-only
	// host reaches public IPv4 receivers through it, so the embedded
	// address is judged instead (the table refuses all of 64:ff9b::/96).
	nat64 = ssrf.IPv6NAT64Prefix
)

// refusedKind names the range addr falls in, or "" when it may be dialed.
func refusedKind(addr netip.Addr) string {
	addr = addr.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	if addr.Is6() && nat64.Contains(addr) {
		b := addr.As16()
		addr = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	var denied netip.Prefix
	if addr.Is4() {
		for _, p := range ipv4Refused {
			if p.Contains(addr) {
				denied = p
				break
			}
		}
	} else if !ssrf.IPv6GlobalUnicast.Contains(addr) {
		denied = ssrf.IPv6GlobalUnicast
	} else {
		for _, p := range ipv6Refused {
			if p.Contains(addr) {
				denied = p
				break
			}
		}
	}
	if !denied.IsValid() {
		return ""
	}
	// Familiar names first, for messages people recognise.
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
	case wireServer.Contains(addr):
		return "cloud platform (Azure WireServer 168.63.129.16)"
	case denied == ssrf.IPv6GlobalUnicast:
		return "non-global IPv6 (outside 2000::/3: IPv4-compatible, site-local, local-use NAT64 or reserved)"
	}
	return "special-purpose (IANA registry, " + denied.String() + ")"
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
	return fmt.Errorf("%w: %s is a %s address; set delivery.allow_private_networks or add its network to delivery.allowed_networks to allow it", ErrRefusedAddress, addr, kind)
}

// control is a net.Dialer Control function: it runs after name resolution,
// on the address actually being dialed, so DNS answers cannot smuggle a
// private address past the check done at create time.
func (g *guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dialed address %q", ErrRefusedAddress, address)
	}
	return g.check(ap.Addr())
}

// checkURL validates a webhook URL: absolute http(s), and, unless private
// networks are allowed, neither localhost nor an IP literal in a refused
// range. Host names are checked again at dial time.
//
// Messages show the URL redacted (RedactURL): they may be logged.
func (g *guard) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%w: url %q is not a URL: %v", ErrInvalid, RedactURL(raw), err)
	}
	raw = RedactURL(raw)
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
	if addr, numeric, ok := legacyIPv4(name); numeric {
		// Browsers and curl read these forms as addresses, Go's own
		// resolver as names (which fail), so one URL would mean two
		// things: refuse it and name the address.
		if !ok {
			return fmt.Errorf("%w: url %q: host %q ends in a number but is not an IPv4 address; write the address in dotted decimal, such as 203.0.113.7", ErrInvalid, raw, host)
		}
		if err := g.check(addr); err != nil {
			return fmt.Errorf("%w: url %q: host %q is the address %s written as a number: %v", ErrInvalid, raw, host, addr, err)
		}
		return fmt.Errorf("%w: url %q: host %q is the address %s written as a number; write it in dotted decimal, %s", ErrInvalid, raw, host, addr, addr)
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		if g.check(netip.MustParseAddr("127.0.0.1")) != nil {
			return fmt.Errorf("%w: url %q points at localhost; set delivery.allow_private_networks or add 127.0.0.0/8 to delivery.allowed_networks to allow it", ErrInvalid, raw)
		}
	}
	return nil
}

// legacyIPv4 reads name as the WHATWG URL standard's IPv4 parser does
// (https://url.spec.whatwg.org/#concept-ipv4-parser): a host whose last
// label is a number is an address, its labels may be hexadecimal (0x7f),
// octal (0177) or fewer than four (127.1, 2130706433). numeric reports
// whether name ends in a number; ok whether it is then a valid address.
func legacyIPv4(name string) (addr netip.Addr, numeric, ok bool) {
	labels := strings.Split(name, ".")
	last := labels[len(labels)-1]
	isNumber := func(l string) (uint64, bool) {
		base := 10
		switch {
		case len(l) >= 2 && (l[:2] == "0x" || l[:2] == "0X"):
			l, base = l[2:], 16
			if l == "" {
				return 0, true
			}
		case len(l) >= 2 && l[0] == '0':
			l, base = l[1:], 8
		}
		if l == "" || len(l) > 32 {
			return 0, false
		}
		n, err := strconv.ParseUint(l, base, 64)
		return n, err == nil
	}
	if last == "" {
		return netip.Addr{}, false, false
	}
	if _, isNum := isNumber(last); !isNum && strings.Trim(last, "0123456789") != "" {
		return netip.Addr{}, false, false
	}
	if len(labels) > 4 {
		return netip.Addr{}, true, false
	}
	var v uint64
	for i, l := range labels {
		n, isNum := isNumber(l)
		if !isNum {
			return netip.Addr{}, true, false
		}
		if i < len(labels)-1 {
			if n > 255 {
				return netip.Addr{}, true, false
			}
			v = v<<8 | n
			continue
		}
		rest := 8 * uint(5-len(labels))
		if n >= 1<<rest {
			return netip.Addr{}, true, false
		}
		v = v<<rest | n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, true
}
