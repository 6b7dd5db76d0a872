// Package version is the one place for Weir's version policy: the binary's
// version, the compatibility window, the checks behind node start-up and
// `weir cluster upgrade`, and the version gates. The CLI, the API and the
// node format and act on its answers; they never re-decide.
//
// # Versions
//
// The binary version (Version) is compiled in with -ldflags. The active
// version is committed in the FSM: the cluster's data and features follow it,
// and it only moves when an upgrade is finalized. All versions are strict
// SemVer 2.0.0: MAJOR.MINOR.PATCH with an optional -PRERELEASE and +BUILD and
// no leading "v". They order as SemVer says: a pre-release sorts before its
// release (0.2.0-rc.1 < 0.2.0) and build metadata is ignored.
//
// # Compatibility window
//
// Every binary declares the oldest active version it can run or upgrade from,
// the start of its window:
//
//   - 0.x.y starts its window at 0.(x-1).0, and at 0.0.0 when x == 0;
//   - M.x.y with M >= 1 starts it at M.(x-1).0, and at M.0.0 when x == 0.
//
// So a binary runs the active versions of its own minor line and of the one
// before it, and an upgrade moves the cluster one minor at a time
// (0.1.0 → 0.3.0 is refused: go through 0.2.x first). The pre-release and
// build of the binary do not move its window: 0.2.0-rc.1 starts at 0.1.0.
//
// A major upgrade needs the last minor of the previous major, which the rule
// cannot know. The release says it with MinCompatible, set at build time
// (-ldflags "-X github.com/weir-streaming/weir/version.MinCompatible=0.9.0"
// for a 1.0.0 that upgrades from 0.9.x). A non-empty MinCompatible replaces
// the rule for that binary, widening or narrowing its window.
//
// # Refusals
//
// Every check returns nil or a *Refusal whose Kind is one of the sentinel
// errors (ErrInvalid, ErrBinaryTooOld, ...), to test with errors.Is, and whose
// Hint tells the operator what to run or install.
//
// # Version gates
//
// Features that change data formats or commands are listed in Gates and
// switch on when the active version reaches their gate, at finalization and
// never earlier: until then, rolling back to the old binary stays safe.
package version

import (
	"fmt"

	goversion "github.com/hashicorp/go-version"
)

// Version is this binary's semantic version. Builds without -ldflags report
// the development default.
var Version = "0.1.0"

// Commit is the source revision, when the build knows it.
var Commit = ""

// MinCompatible, when set at build time with
// -ldflags "-X github.com/weir-streaming/weir/version.MinCompatible=0.9.0",
// is the start of this binary's compatibility window and overrides the rule
// in the package comment. Empty means the rule decides. It exists for major
// upgrades, where the window must reach back into the previous major.
var MinCompatible = ""

// buildBinary and buildWindow are parsed once, at init: a Version or MinCompatible
// that does not parse is a build bug and stops the program before it can
// serve anything.
var buildBinary, buildWindow = mustBuild(Version, MinCompatible)

// mustBuild parses the build-time version and window, panicking with a message
// that says how to fix the build.
func mustBuild(ver, minCompatible string) (bin, win *goversion.Version) {
	bin, err := parse("build-time Version", ver)
	if err != nil {
		panic(fmt.Sprintf("weir/version: %v; rebuild with -ldflags \"-X github.com/weir-streaming/weir/version.Version=MAJOR.MINOR.PATCH\"", err))
	}
	win, err = WindowFor(ver, minCompatible)
	if err != nil {
		panic(fmt.Sprintf("weir/version: %v; rebuild with a valid -X github.com/weir-streaming/weir/version.MinCompatible, or none", err))
	}
	return bin, win
}

// Binary is this binary's version, parsed. The package panics at init if
// Version is not a valid semantic version, so Binary never fails. Each call
// returns a fresh copy the caller may keep.
func Binary() *goversion.Version {
	return clone(buildBinary)
}

// Window is the oldest active version this binary can run or upgrade from:
// MinCompatible when set at build time, otherwise the rule in the package
// comment (M.(x-1).0 for M.x.y, M.0.0 when x == 0). Each call returns a
// fresh copy the caller may keep.
func Window() *goversion.Version {
	return clone(buildWindow)
}

// clone copies a parsed version so callers cannot change the package's own.
func clone(v *goversion.Version) *goversion.Version {
	return goversion.Must(goversion.NewSemver(v.String()))
}
