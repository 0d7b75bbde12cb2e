package remediate

import (
	"context"
	"fmt"
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
// An alert that carries a node label is this host's exactly when the label
// equals the node name: instance is then not consulted, so node names
// another host as a veto. Without node, the alert is this host's when its
// instance label's host part is one of this host's names (hostname, its
// short form, its canonical name, the node name) or one of its own
// addresses (see ownAddrs). Loopback addresses and localhost name whichever
// host reads them, so they only count with trustLoopback (single-host
// setups, tests); link-local and multicast addresses never count.
type identity struct {
	nodeName      string
	trustLoopback bool

	interfaces func() ([]ifaceAddrs, error)

	mu      sync.Mutex
	names   map[string]bool // lower case, no trailing dot
	addrs   map[netip.Addr]bool
	addrsAt time.Time
}

// ifaceAddrs is one network interface with its addresses.
type ifaceAddrs struct {
	name  string
	flags net.Flags
	addrs []netip.Prefix
}

// virtualIfPrefixes name interfaces whose addresses are not one host's own:
// container bridges (docker0's 172.17.0.1 is on every Docker host), CNI and
// overlay devices, kube-proxy's kube-ipvs0 (every Service ClusterIP, on
// every node), dummy devices (NodeLocal DNSCache), tunnels and veths.
var virtualIfPrefixes = []string{
	"docker", "br-", "virbr", "veth", "cni", "flannel", "cali", "cilium", "lxc", "kube-ipvs", "kube-bridge",
	"weave", "vxlan", "genev", "tunl", "dummy", "nodelocaldns", "podman", "cbr", "tap", "vnet", "ovs-", "antrea",
}

func isVirtualIf(name string) bool {
	for _, p := range virtualIfPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ownAddrs picks the addresses that name this host and no other: those of
// interfaces that are up, not loopback and not virtual (virtualIfPrefixes).
// A host-length address (/32, /128) on an interface that also has a shorter
// prefix of the same family is a floating VIP (keepalived, kube-vip) that
// may sit on another host tomorrow, so it does not count; an interface whose
// only address is host-length (some clouds give /32) keeps it.
func ownAddrs(list []ifaceAddrs) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, ifc := range list {
		if ifc.flags&net.FlagUp == 0 || ifc.flags&net.FlagLoopback != 0 || isVirtualIf(ifc.name) {
			continue
		}
		var subnet4, subnet6 bool
		for _, p := range ifc.addrs {
			if p.Bits() < p.Addr().BitLen() {
				if p.Addr().Is4() {
					subnet4 = true
				} else {
					subnet6 = true
				}
			}
		}
		for _, p := range ifc.addrs {
			a := p.Addr()
			if p.Bits() == a.BitLen() && (a.Is4() && subnet4 || !a.Is4() && subnet6) {
				continue
			}
			out[a] = true
		}
	}
	return out
}

// systemInterfaces lists this host's interfaces and their addresses.
func systemInterfaces() ([]ifaceAddrs, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	out := make([]ifaceAddrs, 0, len(ifs))
	for _, ifc := range ifs {
		list, err := ifc.Addrs()
		if err != nil {
			continue
		}
		ia := ifaceAddrs{name: ifc.Name, flags: ifc.Flags}
		for _, a := range list {
			if n, ok := a.(*net.IPNet); ok {
				addr, ok := netip.AddrFromSlice(n.IP)
				ones, _ := n.Mask.Size()
				if ok {
					addr = addr.Unmap()
					if addr.Is4() && ones > 32 {
						ones -= 96
					}
					ia.addrs = append(ia.addrs, netip.PrefixFrom(addr, ones))
				}
			}
		}
		out = append(out, ia)
	}
	return out, nil
}

func newIdentity(nodeName string, trustLoopback bool) *identity {
	id := &identity{
		nodeName:      nodeName,
		names:         map[string]bool{},
		trustLoopback: trustLoopback,
		interfaces:    systemInterfaces,
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
	if node := labels["node"]; node != "" {
		return strings.EqualFold(node, id.nodeName), "node"
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
	list, err := id.interfaces()
	if err != nil {
		// Keep the last known addresses: failing to list them says nothing
		// about whether they changed.
		if id.addrs == nil {
			id.addrs = map[netip.Addr]bool{}
		}
		return
	}
	id.addrs, id.addrsAt = ownAddrs(list), now
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
