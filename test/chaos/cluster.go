// Package chaos is Weir's fault-test harness: it runs a cluster of the
// FROM-scratch image under docker compose, drives a recorded workload of
// idempotent producers and offset readers against the nodes' HTTP API, has a
// nemesis inject faults on a seeded schedule (kill -9, pause, partitions and
// packet loss made with iptables inside the containers' network namespaces),
// heals, drains, reads every node's state, and hands the history to package
// checker. Every run leaves a directory of artifacts; docs/chaos.md explains
// them.
//
// The tests skip themselves when no Docker engine answers.
package chaos

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weir-streaming/weir/test/testenv"
)

// Defaults of the generated compose cluster: its own project, bridge
// network and loopback ports, so it never meets the compose smoke test
// (project weirtest, 172.28.0.0/24, ports 17071-17073) or `make up`.
const (
	DefaultProject  = "weirchaos"
	DefaultSubnet   = "172.29.0" // .0/24; node i (from 1) is .10+i, the gateway .1
	DefaultPortBase = 17180      // node i publishes its API on 127.0.0.1:PortBase+i
	DefaultImage    = "weir-chaos:0.1.0"

	apiPort     = 7070
	clusterPort = 7071
	gossipPort  = 7072

	dockerTimeout  = 2 * time.Minute
	probeTimeout   = 20 * time.Second
	composeTimeout = 3 * time.Minute
	chainName      = "WEIRCHAOS" // iptables chain of the nemesis in each container netns
)

// Node is one container of the cluster.
type Node struct {
	ID        string // weir1, weir2, ...
	Container string // docker container name
	IP        string // on the cluster's bridge network
	API       string // host:port published on the host loopback
	Image     string // the image its container runs
}

// Cluster is a compose project of Weir nodes.
type Cluster struct {
	Project string
	Image   string
	Nodes   []*Node
	Dir     string // holds the generated compose file
	Logf    func(format string, args ...any)

	compose  []string // argv of the compose command
	file     string
	subnet   string
	downOnce sync.Once
}

// ClusterConfig says what cluster to make.
type ClusterConfig struct {
	Nodes    int
	Project  string
	Image    string
	Subnet   string // first three octets
	PortBase int
	Dir      string
	Logf     func(format string, args ...any)
}

// DockerAvailable reports why Docker cannot run the harness, or nil.
func DockerAvailable(ctx context.Context) error {
	if out, err := run(ctx, probeTimeout, "", nil, "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		return fmt.Errorf("docker info: %v: %s", err, firstLine(out))
	}
	if _, err := FindCompose(ctx); err != nil {
		return err
	}
	return nil
}

// FindCompose returns the compose command as argv (testenv.FindCompose).
var FindCompose = testenv.FindCompose

// NewCluster writes the compose file for cfg; Up starts it.
func NewCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Nodes < 1 {
		cfg.Nodes = 3
	}
	if cfg.Project == "" {
		cfg.Project = DefaultProject
	}
	if cfg.Image == "" {
		cfg.Image = DefaultImage
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.PortBase == 0 {
		cfg.PortBase = DefaultPortBase
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	compose, err := FindCompose(ctx)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Project: cfg.Project, Image: cfg.Image, Dir: cfg.Dir, Logf: cfg.Logf, compose: compose,
		file: filepath.Join(cfg.Dir, "docker-compose.yml")}
	for i := 1; i <= cfg.Nodes; i++ {
		c.Nodes = append(c.Nodes, &Node{
			ID:        fmt.Sprintf("weir%d", i),
			Container: fmt.Sprintf("%s-weir%d", cfg.Project, i),
			IP:        fmt.Sprintf("%s.%d", cfg.Subnet, 10+i),
			API:       net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.PortBase+i)),
			Image:     cfg.Image,
		})
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	c.subnet = cfg.Subnet
	if err := c.writeCompose(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) writeCompose() error {
	return os.WriteFile(c.file, []byte(c.composeFile(c.subnet)), 0o644)
}

// Recreate replaces n's container with one of image, keeping its volume
// (the image swap of an upgrade): compose stops the old container
// gracefully and starts the new one.
func (c *Cluster) Recreate(ctx context.Context, n *Node, image string) error {
	n.Image = image
	if err := c.writeCompose(); err != nil {
		return err
	}
	if out, err := run(ctx, composeTimeout, c.Dir, nil, c.compose[0], c.composeArgs("up", "-d", "--no-deps", n.ID)...); err != nil {
		return fmt.Errorf("compose up %s with %s: %v\n%s", n.ID, image, err, out)
	}
	return nil
}

// composeFile is the generated docker-compose.yml: the same node command
// and health check as the project's own file, N nodes, static addresses.
func (c *Cluster) composeFile(subnet string) string {
	var join []string
	for _, n := range c.Nodes {
		join = append(join, fmt.Sprintf("%s:%d", n.IP, gossipPort))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by test/chaos for project %s; removed with the run's containers.\n", c.Project)
	b.WriteString("version: \"2.4\"\n\nservices:\n")
	for _, n := range c.Nodes {
		_, port, _ := net.SplitHostPort(n.API)
		fmt.Fprintf(&b, `  %[1]s:
    image: %[2]s
    container_name: %[3]s
    hostname: %[1]s
    restart: "no"
    stop_grace_period: 10s
    command: >-
      node run --id %[1]s --data-dir /data
      --api-addr 0.0.0.0:%[4]d --cluster-addr 0.0.0.0:%[5]d --gossip-addr 0.0.0.0:%[6]d
      --advertise %[7]s --join %[8]s --bootstrap-expect %[9]d
    healthcheck:
      test: ["CMD", "/weir", "--addr", "127.0.0.1:%[4]d", "node", "health"]
      interval: 2s
      timeout: 2s
      retries: 30
    volumes:
      - %[1]s-data:/data
    ports:
      - "127.0.0.1:%[10]s:%[4]d"
    networks:
      weir:
        ipv4_address: %[7]s
`, n.ID, n.Image, n.Container, apiPort, clusterPort, gossipPort, n.IP, strings.Join(join, ","), len(c.Nodes), port)
	}
	fmt.Fprintf(&b, `
networks:
  weir:
    driver: bridge
    ipam:
      config:
        - subnet: %s.0/24

volumes:
`, subnet)
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "  %s-data:\n", n.ID)
	}
	return b.String()
}

func (c *Cluster) composeArgs(args ...string) []string {
	argv := append([]string{}, c.compose[1:]...)
	argv = append(argv, "-f", c.file, "-p", c.Project)
	return append(argv, args...)
}

// Up removes what an aborted run left and starts the nodes.
func (c *Cluster) Up(ctx context.Context) error {
	c.cleanup(ctx)
	if out, err := run(ctx, composeTimeout, c.Dir, nil, c.compose[0], c.composeArgs("up", "-d")...); err != nil {
		return fmt.Errorf("compose up: %v\n%s", err, out)
	}
	return nil
}

// cleanup unpauses, then removes the project's containers, network and
// volumes (a paused container does not stop).
func (c *Cluster) cleanup(ctx context.Context) {
	for _, n := range c.Nodes {
		_, _ = run(ctx, dockerTimeout, "", nil, "docker", "unpause", n.Container)
	}
	if out, err := run(ctx, composeTimeout, c.Dir, nil, c.compose[0], c.composeArgs("down", "-v", "--remove-orphans", "-t", "5")...); err != nil {
		c.Logf("compose down: %v: %s", err, firstLine(out))
	}
}

// Down saves each node's log under dir (when dir is not empty) and removes
// the project. It runs once; later calls do nothing.
func (c *Cluster) Down(dir string) {
	c.downOnce.Do(func() {
		ctx := context.Background()
		if dir != "" {
			c.SaveLogs(ctx, dir)
		}
		c.cleanup(ctx)
		c.Logf("cluster %s removed", c.Project)
	})
}

// SaveLogs writes `docker logs` of every node to dir/node-<id>.log.
func (c *Cluster) SaveLogs(ctx context.Context, dir string) {
	for _, n := range c.Nodes {
		out, err := run(ctx, dockerTimeout, "", nil, "docker", "logs", "--timestamps", n.Container)
		if err != nil {
			out = append(out, []byte(fmt.Sprintf("\n(docker logs: %v)\n", err))...)
		}
		if werr := os.WriteFile(filepath.Join(dir, "node-"+n.ID+".log"), out, 0o644); werr != nil {
			c.Logf("saving the log of %s: %v", n.ID, werr)
		}
	}
}

// Node returns the node with id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Docker runs a docker command and returns its output.
func (c *Cluster) Docker(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, dockerTimeout, "", nil, "docker", args...)
}

// pid is the host pid of a running container's init, for nsenter.
func (c *Cluster) pid(ctx context.Context, n *Node) (int, error) {
	out, err := c.Docker(ctx, "inspect", "-f", "{{.State.Pid}}", n.Container)
	if err != nil {
		return 0, fmt.Errorf("docker inspect %s: %v: %s", n.Container, err, firstLine(out))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("container %s is not running (pid %q)", n.Container, strings.TrimSpace(string(out)))
	}
	return pid, nil
}

// InNetns runs a host command (iptables, tc) inside the network namespace
// of n's container.
func (c *Cluster) InNetns(ctx context.Context, n *Node, args ...string) ([]byte, error) {
	pid, err := c.pid(ctx, n)
	if err != nil {
		return nil, err
	}
	argv := append([]string{"-t", strconv.Itoa(pid), "-n"}, args...)
	out, err := run(ctx, probeTimeout, "", nil, "nsenter", argv...)
	if err != nil {
		return out, fmt.Errorf("nsenter -t %d -n %s: %v: %s", pid, strings.Join(args, " "), err, firstLine(out))
	}
	return out, nil
}

// run executes name with args in dir and returns its combined output. A nil
// env inherits the process environment.
func run(parent context.Context, timeout time.Duration, dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("%s %s: timed out after %v: %w", name, strings.Join(args, " "), timeout, err)
	}
	return out.Bytes(), err
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
