package delivery

import (
	"errors"
	"net/netip"
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
