// Package testenv holds what the process-level test suites (test/e2e,
// test/compose, test/chaos) need from their surroundings: the repository
// root and the compose command.
package testenv

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// probeTimeout bounds one `compose version` probe.
const probeTimeout = 20 * time.Second

// RepoRoot walks up from the working directory to the one holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// FindCompose returns the compose command as argv: `docker compose` when the
// plugin works, else the standalone `docker-compose` (as the Makefile does).
func FindCompose(ctx context.Context) ([]string, error) {
	for _, c := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := exec.CommandContext(pctx, c[0], append(append([]string{}, c[1:]...), "version")...).Run()
		cancel()
		if err == nil {
			return c, nil
		}
	}
	return nil, errors.New(`neither "docker compose" nor "docker-compose" works`)
}
