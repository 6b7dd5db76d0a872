package version

import (
	"errors"
	"fmt"
)

// Sentinel errors: the Kind of every Refusal this package returns. Test them
// with errors.Is; the API maps each to one error code.
var (
	// ErrInvalid means a version string is not strict SemVer
	// (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]), or a MinCompatible is newer
	// than its own binary.
	ErrInvalid = errors.New("invalid version")

	// ErrBinaryTooOld means a binary is older than the cluster's active
	// version, so it cannot read the cluster's data.
	ErrBinaryTooOld = errors.New("binary older than the active version")

	// ErrOutsideWindow means the cluster's active version is older than the
	// window of a binary: that binary cannot run it or upgrade from it.
	ErrOutsideWindow = errors.New("active version outside the binary's compatibility window")

	// ErrNotNewer means an upgrade target is the active version itself or a
	// pre-release; --force allows both.
	ErrNotNewer = errors.New("upgrade target not a newer release")

	// ErrDowngrade means an upgrade target is older than the active version.
	// It is refused even with --force: the way back is a restore from a
	// backup taken before the upgrade.
	ErrDowngrade = errors.New("downgrade refused")

	// ErrSkipsWindow means the active version is older than the window of the
	// upgrade target: the cluster must go through an intermediate version.
	ErrSkipsWindow = errors.New("upgrade skips the compatibility window")

	// ErrNodeBinary means a node's binary is older than the upgrade target.
	ErrNodeBinary = errors.New("node binary older than the upgrade target")
)

// Refusal is the error every check in this package returns: what was refused
// and why (Message, shown to operators), the rule it broke (Kind, one of the
// sentinel errors) and what to do about it (Hint).
type Refusal struct {
	// Kind is one of the package's sentinel errors; errors.Is matches it.
	Kind error
	// Message is a full sentence with the versions involved.
	Message string
	// Hint says exactly what to run or install to clear the refusal.
	Hint string
}

// Error returns the Message; the Hint is shown separately.
func (r *Refusal) Error() string { return r.Message }

// Unwrap returns the Kind, so errors.Is(err, ErrDowngrade) works.
func (r *Refusal) Unwrap() error { return r.Kind }

// refuse builds a Refusal.
func refuse(kind error, hint, format string, args ...any) *Refusal {
	return &Refusal{Kind: kind, Message: fmt.Sprintf(format, args...), Hint: hint}
}
