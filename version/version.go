// Package version holds the binary's version, set at build time with
// -ldflags "-X github.com/weir-streaming/weir/version.Version=0.2.0".
package version

// Version is this binary's semantic version. Builds without -ldflags report
// the development default.
var Version = "0.1.0"

// Commit is the source revision, when the build knows it.
var Commit = ""
