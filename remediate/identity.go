package remediate

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// addrRefresh is how long the interface addresses are trusted: addresses
// change (DHCP, pod restarts) but not per request.
const addrRefresh = time.Minute

// identity decides whether an alert names this host.
//
// An alert is for this host when its node label equals the node name, or its
// instance label's host part is one of this host's names (hostname, its
// short form, its canonical name, the node name) or interface addresses.
// Loopback addresses and localhost name whichever host reads them, so they
// only count with trustLoopback (single-host setups, tests); link-local and
// multicast addresses never count.
type identity struct {
	nodeName      string
	trustLoopback bool

	interfaceAddrs func() ([]net.Addr, error)

	mu      sync.Mutex
	names   map[string]bool // lower case, no trailing dot
	addrs   map[netip.Addr]bool
	addrsAt time.Time
}

func newIdentity(nodeName string, trustLoopback bool) *identity {
	id := &identity{
		nodeName:       nodeName,
		names:          map[string]bool{},
		trustLoopback:  trustLoopback,
		interfaceAddrs: net.InterfaceAddrs,
	}
	id.addName(nodeName)
	if h, err := os.Hostname(); err == nil {
		id.addName(h)
		// The canonical name is what DNS-based service discovery tends to
		// put in instance. Look it up in the background: a dead resolver
		// must not hold up the start, and until it answers the other names
		// still match.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if cname, err := net.DefaultResolver.LookupCNAME(ctx, h); err == nil {
				id.mu.Lock()
				id.addName(cname)
				id.mu.Unlock()
			}
		}()
	}
	return id
}

// addName adds a host name and its short form (up to the first dot), since
// service discovery may report either. After newIdentity returns, hold mu.
func (id *identity) addName(name string) {
	name = normalizeHost(name)
	if name == "" || isLoopbackName(name) {
		return
	}
	id.names[name] = true
	if short, _, ok := strings.Cut(name, "."); ok && short != "" {
		if _, err := netip.ParseAddr(name); err != nil { // not an IPv4 address
			id.names[short] = true
		}
	}
}

// matches reports whether the alert's labels name this host, and which label
// did, for the log.
func (id *identity) matches(labels map[string]string, now time.Time) (bool, string) {
	if node, ok := labels["node"]; ok && node != "" && strings.EqualFold(node, id.nodeName) {
		return true, "node"
	}
	inst, ok := labels["instance"]
	if !ok || inst == "" {
		return false, ""
	}
	h := normalizeHost(hostPart(inst))
	if h == "" {
		return false, ""
	}
	if addr, err := netip.ParseAddr(h); err == nil {
		addr = addr.Unmap().WithZone("")
		if addr.IsLoopback() {
			return id.trustLoopback, "instance"
		}
		// Link-local and multicast addresses are not one host's: NodeLocal
		// DNSCache binds 169.254.20.10 on every Kubernetes node, and the
		// same fe80:: or 169.254/16 address may sit on many hosts' links.
		if addr.IsUnspecified() || addr.IsLinkLocalUnicast() || addr.IsMulticast() {
			return false, ""
		}
		return id.hasAddr(addr, now), "instance"
	}
	if isLoopbackName(h) {
		return id.trustLoopback, "instance"
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.names[h], "instance"
}

func (id *identity) hasAddr(addr netip.Addr, now time.Time) bool {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.addrs == nil || now.Sub(id.addrsAt) >= addrRefresh || now.Before(id.addrsAt) {
		id.refresh(now)
	}
	return id.addrs[addr]
}

func (id *identity) refresh(now time.Time) {
	list, err := id.interfaceAddrs()
	if err != nil {
		// Keep the last known addresses: failing to list them says nothing
		// about whether they changed.
		if id.addrs == nil {
			id.addrs = map[netip.Addr]bool{}
		}
		return
	}
	addrs := make(map[netip.Addr]bool, len(list))
	for _, a := range list {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			addrs[addr.Unmap()] = true
		}
	}
	id.addrs, id.addrsAt = addrs, now
}

// hostPart extracts the host from an instance label: "host:port",
// "[v6]:port", a bare host or address, or a URL ("https://host:port/path")
// as blackbox-style targets have.
func hostPart(instance string) string {
	s := strings.TrimSpace(instance)
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if _, rest, ok := strings.Cut(s, "@"); ok { // user info
		s = rest
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return s[1 : len(s)-1]
	}
	return s
}

func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

func isLoopbackName(h string) bool {
	return h == "localhost" || strings.HasSuffix(h, ".localhost") || h == "localhost.localdomain"
}
