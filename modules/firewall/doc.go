// Package firewall is the firewall kind: a school gateway's nftables
// firewall described as Amon-style zones, applied atomically and
// commit-confirmed.
//
// The spec ([Spec]) is desired state: zones with a security level, named
// address sets, a zone-to-zone policy, services the server itself offers,
// masquerade, port forwards, logging of drops and the probes that confirm
// a new ruleset. [Firewall] compiles it, with the lifelines it generates
// itself from its [Config] (loopback, established flows, agent →
// controller, academy admin networks → ssh), into one nftables table,
// `inet alize`, that it owns outright and replaces in one netlink batch.
// It touches no other table.
//
// Applying is commit-confirmed, as Junos does it: the previous table is
// saved to disk, the new one loaded, then probes run over new connections;
// if one fails or the deadline passes the previous table comes back in one
// batch and Apply returns an error matching [ErrReverted]. An agent killed
// inside the window reverts on restart with [Firewall.Recover]. Only a
// confirmed ruleset is saved for boot, as nft text.
//
// Who may import it: the agent (its engine wires the kind in run()), the
// controller (to validate specs before signing, through
// modules.CheckerFor), and tests. It never imports agent or controller
// code.
package firewall
