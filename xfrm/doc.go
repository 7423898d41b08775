// Package xfrm speaks Linux's XFRM dialect for secnic: it parses the
// grammar of iproute2's `ip xfrm state` and `ip xfrm policy` commands into
// secnic's schema (sa.BundleSpec, sa.PolicySpec) and prints secnic's
// bundles and policies in the format `ip xfrm` prints, so that scripts
// written for Linux work against secnic. It also renders the SA table as
// netdevsim's debugfs "ipsec" file.
//
// The models differ. XFRM keeps states (one SA each, no direction before
// Linux 6.10) and policies whose templates find states by reqid, proto,
// mode and addresses at lookup time. secnic keeps bundles (an ESP and/or
// an AH SA, one direction) and policies that link bundles by name. The
// mapping, documented in docs/xfrm.md:
//
//   - a state is a bundle with one SA, named StateName(dir, proto, spi,
//     dst, reqid) so that the reqid survives the round trip;
//   - its direction comes from "dir in|out", from "offload ... dir in|out",
//     or from whether src or dst is a local address;
//   - a policy's templates are resolved to the bundles of existing states
//     when the policy is added (ResolveTemplates); in a script (RunScript)
//     a policy whose states come later waits for them;
//   - "dir fwd" policies are inbound secnic policies named "xfrm-fwd-...".
//
// Every word of the grammar that secnic cannot honour is refused with an
// error that names it; nothing is silently ignored unless docs/xfrm.md
// says why it has no effect on a NIC.
package xfrm
