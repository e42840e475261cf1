// Package accounts is the accounts kind: the pupils and staff of one
// establishment in its OpenLDAP directory, in the tree EOLE Scribe uses
// (ou=<UAI>,ou=ac-<academy>,ou=education,o=gouv,c=fr; users under
// ou=eleves and ou=personnels of ou=Utilisateurs, groups under ou=groupes),
// so that ENT tools, Samba (ldapsam) and the shares kind keep working.
//
// The spec (Spec) names the establishment, the rules (id ranges, logins,
// initial passwords, leavers, Samba) and the roster, inline or as a blob
// the manifest lists (package roster reads it). Plan reads the directory
// with paged searches and diffs it with the roster; Apply creates
// accounts and groups, keeps the managed attributes and memberships in
// line, and disables and archives leavers, never deleting them. Only
// entries marked with labeledURI "alize:accounts" under the tree's OUs
// are managed. Initial passwords are generated here, stored as {SSHA} and
// NT hashes, and kept encrypted for the technician to print (package
// credentials). docs/kinds/accounts.md tells the whole behaviour.
//
// Who may import it: the agent (which wires it in run()), the
// controller (Checker, to validate specs before signing) and tests. It
// imports modules, its sub-packages roster and credentials, go-ldap and
// golang.org/x; never agent or controller code.
package accounts
