package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testTLSConfig returns a config whose self-signed certificate is valid for
// 127.0.0.1 and trusted by the same config, for both sides.
func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weir-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

func TestMux_TLS(t *testing.T) {
	cfg := testTLSConfig(t)
	m, err := Listen(Config{BindAddr: "127.0.0.1:0", TLS: cfg})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer m.Close()
	m.ServeRPC(echoHandler)
	peer, err := Listen(Config{BindAddr: "127.0.0.1:0", TLS: cfg})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer peer.Close()

	c := NewClient(peer.Addr().String(), nil, cfg, nil)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Call(ctx, m.Addr().String(), 5, []byte("secret"))
	if err != nil {
		t.Fatalf("tls call: %v", err)
	}
	if !bytes.Equal(resp, []byte("\x05secret")) {
		t.Fatalf("response %q", resp)
	}

	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := m.RaftLayer().Accept()
		if err == nil {
			accepted <- conn
		}
	}()
	out, err := peer.RaftLayer().Dial(raft.ServerAddress(m.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("tls raft dial: %v", err)
	}
	defer out.Close()
	if _, err := out.Write([]byte("raft")); err != nil {
		t.Fatalf("write: %v", err)
	}
	select {
	case in := <-accepted:
		defer in.Close()
		buf := make([]byte, 4)
		_ = in.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(in, buf); err != nil || string(buf) != "raft" {
			t.Fatalf("read %q, %v", buf, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tls raft conn never accepted")
	}

	// A plaintext client cannot talk to a TLS mux.
	plain := NewClient("", nil, nil, nil)
	defer plain.Close()
	if _, err := plain.Call(ctx, m.Addr().String(), 5, nil); err == nil {
		t.Fatal("plaintext call to a TLS mux succeeded")
	}
}
