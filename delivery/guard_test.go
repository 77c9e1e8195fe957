package delivery

import (
	"errors"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// Item 12: the ranges come from the IANA special-purpose registries, and
// both the URL check and the dial-time check refuse them.
func TestGuardSpecialPurposeRanges(t *testing.T) {
	refused := []string{
		"192.0.0.1", "192.0.0.170", "198.18.0.1", "198.19.255.255", "192.0.2.10", "198.51.100.7", "203.0.113.9",
		"2001:db8::1", "2002:c000:0201::1", "2001:0:4136:e378::1", "64:ff9b:1::a00:1", "::7f00:1", "::8.8.8.8",
		"168.63.129.16", "192.88.99.1", "3fff::1", "fec0::1", "::ffff:198.18.0.1", "64:ff9b::c612:1",
	}
	for _, a := range refused {
		if refusedKind(netip.MustParseAddr(a)) == "" {
			t.Errorf("%s is not refused", a)
		}
	}
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "168.63.129.17", "2606:4700:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8", "192.0.3.1", "198.20.0.1"} {
		if k := refusedKind(netip.MustParseAddr(a)); k != "" {
			t.Errorf("%s refused as %s", a, k)
		}
	}

	strict, err := newGuard(Config{})
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := newGuard(Config{AllowedNetworks: []string{"198.18.0.0/15"}})
	if err != nil {
		t.Fatal(err)
	}
	open, _ := newGuard(Config{AllowPrivateNetworks: true})
	for _, u := range []string{"http://198.18.0.1/", "http://[2001:db8::1]/", "http://192.0.2.1/x", "http://168.63.129.16/machine"} {
		if err := strict.checkURL(u); !errors.Is(err, ErrInvalid) {
			t.Errorf("checkURL(%s) = %v, want refused", u, err)
		}
		if err := open.checkURL(u); err != nil {
			t.Errorf("allow_private_networks: checkURL(%s) = %v", u, err)
		}
	}
	if err := strict.control("tcp4", "198.18.0.1:443", nil); !errors.Is(err, ErrRefusedAddress) || !strings.Contains(err.Error(), "198.18.0.0/15") {
		t.Errorf("dial-time check of 198.18.0.1: %v", err)
	}
	if err := allowed.control("tcp4", "198.18.0.1:443", nil); err != nil {
		t.Errorf("allowed_networks 198.18.0.0/15: %v", err)
	}
	if err := allowed.checkURL("http://198.18.0.1/"); err != nil {
		t.Errorf("allowed_networks 198.18.0.0/15 at create time: %v", err)
	}
}

func TestRefusedKind(t *testing.T) {
	tests := []struct {
		addr    string
		refused bool
	}{
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"172.32.0.1", false},
		{"192.168.1.1", true},
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		{"100.128.0.1", false},
		{"169.254.169.254", true},
		{"fe80::1", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"0.0.0.0", true},
		{"::", true},
		{"224.0.0.1", true},
		{"ff02::1", true},
		{"255.255.255.255", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.0.0.1", true},
		{"64:ff9b::a00:1", true}, // NAT64 of 10.0.0.1
		{"8.8.8.8", false},
		{"2606:4700:4700::1111", false},
		{"::ffff:8.8.8.8", false},
	}
	for _, tt := range tests {
		if got := refusedKind(netip.MustParseAddr(tt.addr)) != ""; got != tt.refused {
			t.Errorf("refusedKind(%s) refused=%v, want %v", tt.addr, got, tt.refused)
		}
	}
}

// A host that ends in a number is an IPv4 address to browsers and curl
// (the WHATWG URL standard), however it is written: such URLs are refused
// at create time, naming the address, instead of being stored as names.
func TestGuardNumericHosts(t *testing.T) {
	strict, err := newGuard(Config{})
	if err != nil {
		t.Fatal(err)
	}
	open, _ := newGuard(Config{AllowPrivateNetworks: true})
	for host, want := range map[string]string{
		"0x7f000001": "127.0.0.1", "2130706433": "127.0.0.1", "0177.0.0.1": "127.0.0.1", "127.1": "127.0.0.1",
		"0x7f.1": "127.0.0.1", "10.0x1": "10.0.0.1", "0X0A000001.": "10.0.0.1", "0xa9.254.169.254": "169.254.169.254",
		"134744072": "8.8.8.8", "0x08.0x08.0x08.0x08": "8.8.8.8", "1.0x": "1.0.0.0",
	} {
		for _, g := range []*guard{strict, open} {
			err := g.checkURL("http://" + host + "/hook")
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
				t.Errorf("checkURL(http://%s/hook) = %v, want refused naming %s", host, err, want)
			}
		}
	}
	for _, host := range []string{"1.2.3.4.5", "256.0.0.1", "08", "4294967296", "1..2"} {
		if err := open.checkURL("http://" + host + "/"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not an IPv4 address") {
			t.Errorf("checkURL(http://%s/) = %v, want refused as not an address", host, err)
		}
	}
	for _, host := range []string{"example.com", "0x7f000001.example.com", "1e3.example", "a1", "0xz", "hooks.example.com."} {
		if err := strict.checkURL("http://" + host + "/"); err != nil {
			t.Errorf("checkURL(http://%s/) = %v, want accepted (a name)", host, err)
		}
	}
}

// FuzzCheckURL: webhook URLs come from admin callers. Whatever the input,
// checkURL does not panic, and a URL a strict guard accepts is absolute
// http(s), carries no credentials, and its host is neither an address in
// a refused range nor a number that browsers would read as one.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://hooks.example.com/x", "http://0x7f000001/", "http://127.1/", "http://[::1]/", "http://localhost./",
		"http://0177.0.0.1:8080/a?b", "http://1.2.3.4.5/", "http://u:p@example.com/", "ftp://example.com/", "http://0x/",
		"http://08/", "http://%31%32%37.0.0.1/", "http://[fe80::1%25eth0]/", "http://example.com:99999/",
	} {
		f.Add(s)
	}
	strict, err := newGuard(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if err := strict.checkURL(raw); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("checkURL(%q) = %v, not ErrInvalid", raw, err)
			}
			return
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Hostname() == "" {
			t.Fatalf("checkURL accepted %q (parse error %v)", raw, err)
		}
		name := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
		if addr, err := netip.ParseAddr(name); err == nil && strict.check(addr) != nil {
			t.Fatalf("checkURL accepted %q, whose host is refused", raw)
		}
		if _, numeric, _ := legacyIPv4(name); numeric {
			t.Fatalf("checkURL accepted %q, whose host ends in a number", raw)
		}
	})
}

// legacyIPv4 agrees with netip on canonical dotted-decimal addresses.
func FuzzLegacyIPv4(f *testing.F) {
	f.Add(uint32(0x7f000001))
	f.Add(uint32(0))
	f.Add(uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, v uint32) {
		want := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		for _, form := range []string{want.String(), strconv.FormatUint(uint64(v), 10), "0x" + strconv.FormatUint(uint64(v), 16), "0" + strconv.FormatUint(uint64(v), 8)} {
			got, numeric, ok := legacyIPv4(form)
			if !numeric || !ok || got != want {
				t.Fatalf("legacyIPv4(%q) = %v, %v, %v; want %v", form, got, numeric, ok, want)
			}
		}
	})
}
