// Package netguard decides which addresses the gateway may dial when a
// peer, not the operator, chose the destination (an upstream's
// authorization server, a client's metadata document): never link-local
// (cloud metadata), multicast or unspecified addresses, and loopback,
// private and shared (CGNAT) ones only when allowed. It checks the address
// being dialled, after resolution, so a name that resolves (or rebinds)
// to a forbidden address is refused too.
package netguard

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Private reports whether ip is loopback, private or shared address space.
func Private(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || cgnat.Contains(ip)
}

// Control is a net.Dialer Control function enforcing the rules; why names
// the setting that allows private addresses, for the error.
func Control(allowPrivate bool, why string) func(network, address string, c syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("refusing %s: not an address", host)
		}
		ip = ip.Unmap()
		switch {
		case ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast():
			return fmt.Errorf("refusing %s: not a destination the gateway dials for a peer", ip)
		case !allowPrivate && Private(ip):
			return fmt.Errorf("refusing %s: a private address (%s)", ip, why)
		}
		return nil
	}
}
