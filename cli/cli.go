// Package cli is the weir command line: the kong command tree, output
// formatting, the HTTP client that tries each --addr in turn, and the
// local-mode process manager behind `weir cluster start|stop|delete`.
//
// The CLI formats and transports; it never re-decides what the cluster
// decides. Refusals come from the API's error envelope and are printed as
//
//	error: <message> (<CODE>)
//	hint: <hint>
//
// with exit status 1; usage errors exit with status 2.
package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/weir-streaming/weir/node"
	"github.com/weir-streaming/weir/version"
)

// Exit statuses of the weir command.
const (
	ExitOK     = 0 // done
	ExitFailed = 1 // refused or failed; the message says why and what to do
	ExitUsage  = 2 // the command line does not parse
)

// homeDirName is the default WEIR_HOME under the user's home directory.
const homeDirName = ".weir"

// CLI is the command tree.
type CLI struct {
	Globals

	Version VersionCmd `cmd:"" help:"Print the version of this binary."`
	Node    NodeCmd    `cmd:"" help:"Run a node, or list and check the nodes of a cluster."`
	Cluster ClusterCmd `cmd:"" help:"Start, stop, inspect, upgrade, back up, restore and delete a cluster."`
	Topic   TopicCmd   `cmd:"" help:"Create, list, describe and delete topics."`
	Produce ProduceCmd `cmd:"" help:"Write one record per input line to a topic."`
	Consume ConsumeCmd `cmd:"" help:"Read records from a topic, one per line."`
	Bench   BenchCmd   `cmd:"" help:"Measure produce and consume throughput and latency, and the raw-Raft ceiling."`
}

// Globals are the flags every command takes.
type Globals struct {
	Addr        []string         `help:"API addresses of the cluster's nodes (host:port), comma-separated, tried in turn. Default: the nodes of the local cluster recorded by \"cluster start\", else 127.0.0.1:${api_port}." env:"WEIR_ADDR" placeholder:"HOST:PORT"`
	Output      string           `help:"Output format: text or json." enum:"text,json" default:"text"`
	LogLevel    string           `help:"Log level of \"node run\" and of the nodes \"cluster start\" spawns: trace, debug, info, warn or error." enum:"trace,debug,info,warn,error" default:"info"`
	Home        string           `help:"Directory holding the local cluster's state (default ~/${home_dir})." env:"WEIR_HOME" placeholder:"DIR"`
	ShowVersion kong.VersionFlag `name:"version" help:"Print the version and exit."`
}

// JSON reports whether --output json was asked for.
func (g *Globals) JSON() bool { return g.Output == "json" }

// HomeDir is --home, WEIR_HOME, or ~/.weir.
func (g *Globals) HomeDir() (string, error) {
	if g.Home != "" {
		return filepath.Abs(g.Home)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", &Failure{
			Message: fmt.Sprintf("cannot find the home directory for the local cluster's state: %v", err),
			Hint:    "set WEIR_HOME or pass --home",
		}
	}
	return filepath.Join(home, homeDirName), nil
}

// addrs are the API addresses to talk to, and the local cluster they came
// from when --addr and WEIR_ADDR are not set (nil otherwise).
func (g *Globals) addrs() ([]string, *LocalCluster, error) {
	var out []string
	for _, a := range g.Addr {
		for _, part := range strings.Split(a, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	if len(out) > 0 {
		return out, nil, nil
	}
	if home, err := g.HomeDir(); err == nil {
		lc, err := loadLocalCluster(home)
		if err != nil {
			return nil, nil, err
		}
		if lc != nil {
			return lc.APIAddrs(), lc, nil
		}
	}
	return []string{defaultAPIAddr()}, nil, nil
}

// defaultAPIAddr is where `node run` serves the API by default.
func defaultAPIAddr() string {
	return net.JoinHostPort(loopbackHost, strconv.Itoa(node.DefaultAPIPort))
}

// Streams are a command's standard input and outputs. Tests bind buffers.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// Failure is an error the CLI itself reports, with what to do about it.
type Failure struct {
	Message string
	Hint    string
}

func (f *Failure) Error() string { return f.Message }

// failf makes a Failure with a hint.
func failf(hint, format string, args ...any) error {
	return &Failure{Message: fmt.Sprintf(format, args...), Hint: hint}
}

// usageError marks a parse error so that it exits with ExitUsage.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }
func (u usageError) ExitCode() int { return ExitUsage }

// exitStatus carries kong's Exit (after --help, --version or a parse error)
// out of the parser as a panic, so that Run returns instead of exiting.
type exitStatus int

// Main runs the weir command with the process's arguments and streams and
// returns its exit status.
func Main(args []string) int {
	return Run(args, Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
}

// Run parses args, runs the selected command and returns the exit status.
func Run(args []string, s Streams) (status int) {
	var cli CLI
	defer func() {
		if r := recover(); r != nil {
			code, ok := r.(exitStatus)
			if !ok {
				panic(r)
			}
			status = int(code)
		}
	}()
	parser, err := newParser(&cli, &s)
	if err != nil {
		// The command tree itself is wrong: a bug, not a usage error.
		fmt.Fprintf(s.Err, "error: %v\n", err)
		return ExitFailed
	}
	ctx, err := parser.Parse(args)
	if err != nil {
		parser.FatalIfErrorf(usageError{err}) // prints usage and panics with ExitUsage
		return ExitUsage
	}
	if err := ctx.Run(); err != nil {
		report(s.Err, localHint(&cli.Globals, err))
		return ExitFailed
	}
	return ExitOK
}

// newParser builds the kong parser and binds what commands need: the
// globals, the streams, and lazily the API client and the printer.
func newParser(cli *CLI, s *Streams) (*kong.Kong, error) {
	return kong.New(cli,
		kong.Name("weir"),
		kong.Description("Weir: a Raft-replicated streaming cluster. Every command talks to any node of the cluster over its HTTP API."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Writers(s.Out, s.Err),
		kong.Exit(func(code int) { panic(exitStatus(code)) }),
		kong.Vars{
			"version":        versionString(),
			"binary_version": version.Version,
			"home_dir":       homeDirName,
			"default_nodes":  strconv.Itoa(defaultLocalNodes),
			"api_port":       strconv.Itoa(node.DefaultAPIPort),
			"api_addr":       defaultAPIAddr(),
			"cluster_addr":   net.JoinHostPort(loopbackHost, strconv.Itoa(node.DefaultClusterPort)),
			"gossip_addr":    net.JoinHostPort(loopbackHost, strconv.Itoa(node.DefaultGossipPort)),
			"trailing_logs":  strconv.Itoa(node.DefaultTrailingLogs),
		},
		kong.Bind(&cli.Globals, s),
		kong.BindSingletonProvider(func(g *Globals) (*Client, error) {
			addrs, _, err := g.addrs()
			if err != nil {
				return nil, err
			}
			return NewClient(addrs)
		}),
		kong.BindSingletonProvider(func(g *Globals) *Printer {
			return &Printer{w: s.Out, json: g.JSON()}
		}),
	)
}

// report prints err as "error: ..." and, when there is one, "hint: ...".
func report(w io.Writer, err error) {
	fmt.Fprintf(w, "error: %s\n", err)
	if hint := hintOf(err); hint != "" {
		fmt.Fprintf(w, "hint: %s\n", hint)
	}
}

// hinted gives an error a better hint than its own.
type hinted struct {
	error
	hint string
}

func (h *hinted) Unwrap() error { return h.error }

// localHint replaces the hint of "no node answered" when the nodes are
// those of the local cluster and none of its processes runs: the hint then
// says why (the last lifecycle state seen) and what to run.
func localHint(g *Globals, err error) error {
	var unr *UnreachableError
	if !errors.As(err, &unr) {
		return err
	}
	_, lc, lerr := g.addrs()
	if lerr != nil || lc == nil {
		return err
	}
	if running, _ := lc.split(); len(running) > 0 {
		return err
	}
	hint := `the local cluster's node processes are stopped: start them with "weir cluster start"`
	if ks := lc.LastKnown; ks != nil {
		switch ks.Phase {
		case phaseShutdown:
			hint = fmt.Sprintf(`the local cluster is shut down (version %s) and its node processes are stopped: run "weir cluster upgrade" with the new weir binary, or "weir cluster resume" to open it again`, orDash(ks.ActiveVersion))
		case phaseUpgradeMarked:
			hint = fmt.Sprintf(`the local cluster is marked for an upgrade to %s and its node processes are stopped: run "weir cluster resume" with weir %s`, orDash(ks.TargetVersion), orDash(ks.TargetVersion))
		case phaseResuming:
			hint = `the local cluster is resuming and its node processes are stopped: run "weir cluster resume" to start them and continue`
		}
	}
	return &hinted{error: err, hint: hint}
}

// hintOf finds the hint that goes with err, if any.
func hintOf(err error) string {
	var (
		hint   *hinted
		apiErr *APIError
		fail   *Failure
		unr    *UnreachableError
		ref    *version.Refusal
	)
	switch {
	case errors.As(err, &hint):
		return hint.hint
	case errors.As(err, &ref):
		return ref.Hint
	case errors.As(err, &apiErr):
		return apiErr.Hint
	case errors.As(err, &fail):
		return fail.Hint
	case errors.As(err, &unr):
		return `is the cluster running? Start a local one with "weir cluster start", or point --addr (or WEIR_ADDR) at a node's API address`
	}
	return ""
}

// versionString is what `weir version` and `weir --version` print.
func versionString() string {
	if version.Commit != "" {
		return fmt.Sprintf("weir %s (commit %s)", version.Version, version.Commit)
	}
	return "weir " + version.Version
}

// VersionCmd is `weir version`.
type VersionCmd struct{}

// Run prints the binary's version.
func (c *VersionCmd) Run(g *Globals, p *Printer) error {
	if g.JSON() {
		return p.JSON(struct {
			Version string `json:"version"`
			Commit  string `json:"commit,omitempty"`
		}{version.Version, version.Commit})
	}
	p.Linef("%s", versionString())
	return nil
}
