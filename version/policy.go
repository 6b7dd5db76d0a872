package version

import (
	"fmt"
	"regexp"
	"strings"

	goversion "github.com/hashicorp/go-version"
)

// semverRe is the SemVer 2.0.0 grammar (semver.org): go-version alone also
// accepts "v0.2.0", "0.2" and "01.2.3", which would give one version several
// spellings in the FSM, in gossip and in the history.
var semverRe = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
	`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// invalidHint is the Hint of an ErrInvalid refusal with no better advice.
const invalidHint = "write it as MAJOR.MINOR.PATCH, optionally followed by -PRERELEASE or +BUILD, e.g. 0.2.0 or 0.3.0-rc.1"

// parse parses a strict semantic version; what names it in the refusal
// ("upgrade target", "node n2's binary version").
func parse(what, v string) (*goversion.Version, error) {
	if v == "" {
		return nil, refuse(ErrInvalid, invalidHint, "%s is empty: it must be a version such as 0.2.0.", what)
	}
	if semverRe.MatchString(v) {
		if p, err := goversion.NewSemver(v); err == nil {
			return p, nil
		}
	}
	hint := invalidHint
	if rest, ok := strings.CutPrefix(v, "v"); ok && semverRe.MatchString(rest) {
		hint = fmt.Sprintf("drop the leading \"v\": %s", rest)
	}
	return nil, refuse(ErrInvalid, hint, "%s %q is not a valid version: it must be MAJOR.MINOR.PATCH, e.g. 0.2.0.", what, v)
}

// Valid returns nil when v is a strict semantic version
// (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], no leading "v"), otherwise an
// ErrInvalid Refusal saying what is wrong.
func Valid(v string) error {
	_, err := parse("version", v)
	return err
}

// Less reports whether a sorts before b in SemVer order (a pre-release before
// its release, build metadata ignored). It returns an ErrInvalid Refusal when
// either does not parse.
func Less(a, b string) (bool, error) {
	va, err := parse("version", a)
	if err != nil {
		return false, err
	}
	vb, err := parse("version", b)
	if err != nil {
		return false, err
	}
	return va.LessThan(vb), nil
}

// WindowFor is Window for another node's binary, from the version and
// MinCompatible it reports in gossip: minCompatible when non-empty, otherwise
// M.(x-1).0 for M.x.y and M.0.0 when x == 0 (pre-release and build ignored:
// 0.2.0-rc.1 gives 0.1.0). It returns an ErrInvalid Refusal when either does
// not parse or minCompatible is newer than the binary, which could then not
// run its own version.
func WindowFor(binary string, minCompatible string) (*goversion.Version, error) {
	bin, err := parse("binary version", binary)
	if err != nil {
		return nil, err
	}
	return windowOf(bin, "binary", minCompatible)
}

// windowOf applies the window rule to a parsed binary version; who names the
// binary in refusals.
func windowOf(bin *goversion.Version, who, minCompatible string) (*goversion.Version, error) {
	if minCompatible != "" {
		floor, err := parse("MinCompatible of "+who+" "+bin.String(), minCompatible)
		if err != nil {
			return nil, err
		}
		if bin.LessThan(floor) {
			return nil, refuse(ErrInvalid,
				"build it with a MinCompatible no newer than its own version, or none for the default window",
				"MinCompatible %s of %s %s is newer than the binary itself, which could then not run its own version.", floor, who, bin)
		}
		return floor, nil
	}
	s := bin.Segments64()
	major, minor := s[0], s[1]
	if minor > 0 {
		minor--
	}
	return goversion.Must(goversion.NewSemver(fmt.Sprintf("%d.%d.0", major, minor))), nil
}

// hop names the version an active version must go through before it reaches
// the window win, for hints ("upgrade to 0.2.x first"). The first step is the
// next minor line, or the window's own line when that is the next one; across
// a major it is the last release of the active major, whose successor's
// MinCompatible admits it.
func hop(active, win *goversion.Version) string {
	a, w := active.Segments64(), win.Segments64()
	switch {
	case a[0] < w[0]:
		return fmt.Sprintf("the last %d.x release and then to %d.0.x", a[0], a[0]+1)
	case a[1]+1 < w[1]:
		return fmt.Sprintf("%d.%d.x", a[0], a[1]+1)
	case w[2] == 0 && win.Prerelease() == "":
		return fmt.Sprintf("%d.%d.x", w[0], w[1])
	default:
		return fmt.Sprintf("%s or a newer %d.%d.x", win, w[0], w[1])
	}
}

// stepsHint is the shared part of the hints that send the cluster through an
// intermediate version.
func stepsHint(active, win *goversion.Version) string {
	return fmt.Sprintf("upgrade the cluster to %s first (on every node install that weir release, then run `weir cluster upgrade`)", hop(active, win))
}

// CanRun reports whether a binary of version bin, with window minCompatible
// (empty: the default rule), may serve a cluster whose active version is
// active. A new cluster (active == "") can always be served. Otherwise the
// node refuses to start with ErrBinaryTooOld when bin is older than active (it
// cannot read the data), and with ErrOutsideWindow when active is older than
// the binary's window (it cannot run it or upgrade from it).
func CanRun(bin, minCompatible, active string) error {
	b, err := parse("binary version", bin)
	if err != nil {
		return err
	}
	win, err := windowOf(b, "binary", minCompatible)
	if err != nil {
		return err
	}
	if active == "" {
		return nil
	}
	a, err := parse("the cluster's active version", active)
	if err != nil {
		return err
	}
	if b.LessThan(a) {
		return refuse(ErrBinaryTooOld,
			fmt.Sprintf("install weir %s or newer; a way back is `weir cluster restore --from FILE` from a backup taken before the upgrade", a),
			"binary %s is older than the cluster's active version %s.", b, a)
	}
	if a.LessThan(win) {
		return refuse(ErrOutsideWindow,
			fmt.Sprintf("restart this node on the weir binary it ran before; %s, then install weir %s", stepsHint(a, win), b),
			"the cluster's active version %s is older than %s, the oldest version weir %s can run.", a, win, b)
	}
	return nil
}

// CheckUpgrade applies the rules of `weir cluster upgrade` from the active
// version to target, whose binary has window targetMinCompatible (empty: the
// default rule). In order:
//
//   - ErrInvalid when a version does not parse;
//   - ErrDowngrade when target is older than active, force included: the way
//     back is a restore from a backup;
//   - ErrSkipsWindow when active is older than the target binary's window,
//     force included (the target could not run the cluster); the hint names
//     the version to go through first;
//   - ErrNotNewer, unless force, when target equals active or is a
//     pre-release.
func CheckUpgrade(active, target, targetMinCompatible string, force bool) error {
	a, err := parse("the cluster's active version", active)
	if err != nil {
		return err
	}
	t, err := parse("upgrade target", target)
	if err != nil {
		return err
	}
	win, err := windowOf(t, "upgrade target", targetMinCompatible)
	if err != nil {
		return err
	}
	if t.LessThan(a) {
		return refuse(ErrDowngrade,
			"to go back, restore a backup taken before the upgrade: `weir cluster restore --from FILE`",
			"upgrade target %s is older than the cluster's active version %s: downgrades are refused, --force included.", t, a)
	}
	if a.LessThan(win) {
		return refuse(ErrSkipsWindow,
			fmt.Sprintf("%s, then upgrade to %s", stepsHint(a, win), t),
			"upgrading from %s to %s skips a version: weir %s runs active versions from %s on.", a, t, t, win)
	}
	if force {
		return nil
	}
	if t.Equal(a) {
		return refuse(ErrNotNewer,
			fmt.Sprintf("nothing to do; pass --force to mark an upgrade to %s anyway", t),
			"the cluster's active version is already %s.", a)
	}
	if t.Prerelease() != "" {
		return refuse(ErrNotNewer,
			fmt.Sprintf("choose a release such as %s, or pass --force to upgrade to the pre-release", t.Core()),
			"upgrade target %s is a pre-release.", t)
	}
	return nil
}

// CheckNode reports whether node id, running binary version bin with window
// minCompatible (empty: the default rule), may take part in an upgrade of the
// cluster from active to target. It refuses with ErrNodeBinary when bin is
// older than target, and with ErrOutsideWindow when active is older than the
// node binary's window; both hints say what to install on that node.
func CheckNode(id, bin, minCompatible, active, target string) error {
	who := "node " + id + "'s binary"
	b, err := parse(who+" version", bin)
	if err != nil {
		return err
	}
	win, err := windowOf(b, who, minCompatible)
	if err != nil {
		return err
	}
	a, err := parse("the cluster's active version", active)
	if err != nil {
		return err
	}
	t, err := parse("upgrade target", target)
	if err != nil {
		return err
	}
	install := fmt.Sprintf("install weir %s on node %s and restart it", t, id)
	if b.LessThan(t) {
		return refuse(ErrNodeBinary, install,
			"node %s runs weir %s, older than the upgrade target %s.", id, b, t)
	}
	if a.LessThan(win) {
		return refuse(ErrOutsideWindow, install,
			"node %s runs weir %s, which cannot run the cluster's active version %s: the oldest it can run is %s.", id, b, a, win)
	}
	return nil
}
