package security_test

// Tests of the Kafka providers against the secured broker of `make
// test-security` (TLS with client certificates, SASL/SCRAM over TLS, ACLs),
// on the client KAFKA_CLIENT names (provider/kafkaclient; the script runs
// each). Without the broker (KAFKA_SECURE_SSL unset) they skip: kfake has no
// TLS, SASL or ACLs.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
	"github.com/rehydrate/rehydrate/provider/providertest"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// TestSecurityTLSConformance runs the provider conformance suite over TLS,
// authenticated by a client certificate whose principal has Describe, Read
// and Write on each topic, and nothing else (no group or cluster ACL).
func TestSecurityTLSConformance(t *testing.T) {
	b := newSecureBroker(t)
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T, partitions int) provider.Provider {
			p, err := kafka.New(b.tls("writer", b.topic(t, partitions, grant{"writer", readWrite})))
			require.NoError(t, err)
			return p
		},
	})
}

// TestSecurityTLSRepository runs the repository suite over TLS.
func TestSecurityTLSRepository(t *testing.T) {
	b := newSecureBroker(t)
	rt.Run(t, func(t *testing.T, partitions int) (provider.Provider, func() provider.Provider) {
		cfg := b.tls("writer", b.topic(t, partitions, grant{"writer", readWrite}))
		return openSecure(t, cfg), func() provider.Provider { return openSecure(t, cfg) }
	})
}

// TestSecuritySCRAMRepository runs the repository suite over SASL_SSL with
// SCRAM-SHA-512.
func TestSecuritySCRAMRepository(t *testing.T) {
	b := newSecureBroker(t)
	rt.Run(t, func(t *testing.T, partitions int) (provider.Provider, func() provider.Provider) {
		cfg := b.scram(b.topic(t, partitions, grant{b.scramUser, readWrite}), b.scramPassword)
		return openSecure(t, cfg), func() provider.Provider { return openSecure(t, cfg) }
	})
}

func openSecure(t *testing.T, cfg kafka.Config) provider.Provider {
	t.Helper()
	p, err := kafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// seed writes account "acc" (opened, then 5 deposited) through the admin
// listener and returns its state and version.
func seed(t *testing.T, b secureBroker, topic string) (rt.Account, uint64) {
	t.Helper()
	p := openSecure(t, kafka.Config{Brokers: b.admin, Topic: topic, Timeout: 10 * time.Second})
	r := rt.Restored(t, p)
	_, err := r.Create(t.Context(), "acc", rt.Open("ada"))
	require.NoError(t, err)
	_, err = r.Execute(t.Context(), "acc", rt.Deposit(5))
	require.NoError(t, err)
	state, version, err := r.Get("acc")
	require.NoError(t, err)
	return state, version
}

// assertRefused checks that err is a definite authorization refusal: it
// names authorization, carries the broker's code, and is neither
// provider.ErrOutcomeUnknown (nothing was written) nor
// provider.ErrUnavailable (retrying will not help).
func assertRefused(t *testing.T, err error, codes ...*kerr.Error) {
	t.Helper()
	require.Error(t, err)
	assert.Contains(t, strings.ToLower(err.Error()), "authorization failed")
	assert.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
	assert.NotErrorIs(t, err, provider.ErrUnavailable)
	code, ok := kafka.Code(err)
	if assert.True(t, ok, "no Kafka error code in %v", err) {
		assert.True(t, slices.ContainsFunc(codes, func(c *kerr.Error) bool { return c.Code == code }), "code %d of %v, want one of %v", code, err, codes)
	}
}

// TestSecurityACLWrite: a principal without Write on the topic gets a
// definite authorization error on append, quickly, and a command leaves
// memory unchanged without making the aggregate unresolved. Without Write on
// any topic the broker already refuses the idempotent producer its id
// (cluster authorization), which ends the producer for good; with Write
// elsewhere the produce request itself is refused.
func TestSecurityACLWrite(t *testing.T) {
	b := newSecureBroker(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) kafka.Config
		codes []*kerr.Error
		// refusesID: the broker refuses the idempotent producer its id.
		refusesID bool
	}{
		{
			name:      "no Write anywhere",
			refusesID: true,
			setup: func(t *testing.T) kafka.Config {
				return b.tls("reader", b.topic(t, 2, grant{"reader", readOnly}))
			},
			codes: []*kerr.Error{kerr.ClusterAuthorizationFailed},
		},
		{
			name: "Write on another topic only",
			setup: func(t *testing.T) kafka.Config {
				b.topic(t, 1, grant{"nobody", readWrite})
				return b.tls("nobody", b.topic(t, 2, grant{"nobody", readOnly}))
			},
			codes: []*kerr.Error{kerr.TopicAuthorizationFailed},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.setup(t)
			before, version := seed(t, b, cfg.Topic)
			p := openSecure(t, cfg)
			r := rt.Restored(t, p)
			if tc.refusesID {
				awaitDeadProducer(t, p, cfg.Timeout)
			}

			for i := range 2 {
				start := time.Now()
				_, err := r.Execute(t.Context(), "acc", rt.Deposit(10))
				elapsed := time.Since(start)
				t.Logf("Execute %d: %v (%v)", i+1, err, elapsed)
				assertRefused(t, err, tc.codes...)
				require.NotErrorIs(t, err, repository.ErrUnresolved, "a refusal is no unknown outcome")
				assert.Less(t, elapsed, cfg.Timeout/2)
				state, v, err := r.Get("acc")
				require.NoError(t, err)
				assert.Equal(t, before, state, "memory unchanged")
				assert.Equal(t, version, v)
			}

			// The provider directly: the same refusal.
			start := time.Now()
			_, err := p.Append(t.Context(), []event.Record{testRecord("other", 1)})
			t.Logf("Append: %v (%v)", err, time.Since(start))
			assertRefused(t, err, tc.codes...)
			assert.Less(t, time.Since(start), cfg.Timeout/2)
		})
	}
}

// awaitDeadProducer appends until the provider's producer has failed for
// good, which a broker refusing its id makes it do within moments of its
// start. An append queued before that refusal arrives is purged by
// librdkafka, which proves nothing of a producer that may have had an id
// (the provider cannot tell it never had one): its outcome is reported
// unknown, honestly. From then on every append is refused at once, which is
// what the test checks.
func awaitDeadProducer(t *testing.T, p provider.Provider, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, err := p.Append(t.Context(), []event.Record{testRecord("probe", 1)})
		require.Error(t, err)
		if !errors.Is(err, provider.ErrOutcomeUnknown) {
			return
		}
		require.True(t, time.Now().Before(deadline), "the producer did not fail for good within %v: %v", timeout, err)
	}
}

// TestSecurityEnsureTopic: EnsureTopic works over TLS for a principal
// allowed Create (and Describe) on the topic, and is refused at once,
// naming authorization, without Create.
func TestSecurityEnsureTopic(t *testing.T) {
	b := newSecureBroker(t)
	spec := kafka.TopicSpec{Partitions: 3, ReplicationFactor: 1}

	name := topicName(t)
	b.allow(t, name, grant{"writer", []kadm.ACLOperation{kadm.OpCreate, kadm.OpDescribe}})
	p, err := kafka.New(b.tls("writer", name))
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, p.EnsureTopic(t.Context(), spec))
	ps, err := p.Partitions(t.Context())
	require.NoError(t, err)
	assert.Len(t, ps, 3)

	name = topicName(t)
	b.allow(t, name, grant{"writer", []kadm.ACLOperation{kadm.OpDescribe}})
	p, err = kafka.New(b.tls("writer", name))
	require.NoError(t, err)
	defer p.Close()
	start := time.Now()
	err = p.EnsureTopic(t.Context(), spec)
	t.Logf("EnsureTopic: %v (%v)", err, time.Since(start))
	assertRefused(t, err, kerr.TopicAuthorizationFailed)
	assert.Less(t, time.Since(start), b.tls("writer", name).Timeout/2)
}

func testRecord(aggregate string, version uint64) event.Record {
	e := event.Envelope{ID: event.NewID(), Type: "Opened", AggregateID: aggregate, Version: version,
		Time: time.Now(), ContentType: event.ContentTypeJSON, Payload: []byte(`{"Owner":"x"}`)}
	return e.Record()
}

// TestSecurityACLRead: without Describe, or with Describe but without Read,
// a restore fails at once with an error naming authorization (no waiting for
// the timeout), and the repository stays empty and not ready.
func TestSecurityACLRead(t *testing.T) {
	b := newSecureBroker(t)
	for _, tc := range []struct {
		name     string
		ops      []kadm.ACLOperation
		describe bool // Partitions works
	}{
		{name: "no Describe", ops: nil},
		{name: "Describe without Read", ops: []kadm.ACLOperation{kadm.OpDescribe, kadm.OpDescribeConfigs}, describe: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var grants []grant
			if tc.ops != nil {
				grants = append(grants, grant{"nobody", tc.ops})
			}
			cfg := b.tls("nobody", b.topic(t, 2, grants...))
			seed(t, b, cfg.Topic)
			p := openSecure(t, cfg)
			code := []*kerr.Error{kerr.TopicAuthorizationFailed}

			r := rt.NewRepository(t, p)
			start := time.Now()
			_, err := r.Restore(t.Context())
			t.Logf("Restore: %v (%v)", err, time.Since(start))
			assertRefused(t, err, code...)
			assert.Less(t, time.Since(start), cfg.Timeout/2, "bounded well below the timeout")
			_, _, err = r.Get("acc")
			assert.ErrorIs(t, err, repository.ErrNotReady)
			assert.Zero(t, r.Len())

			start = time.Now()
			ps, err := p.Partitions(t.Context())
			t.Logf("Partitions: %v (%v)", err, time.Since(start))
			if !tc.describe {
				assertRefused(t, err, code...)
				assert.Less(t, time.Since(start), cfg.Timeout/2)
				return
			}
			require.NoError(t, err)
			start = time.Now()
			n := 0
			err = p.Read(t.Context(), provider.Ranges(ps), 0, func(b provider.Batch) error {
				n += len(b.Records)
				return nil
			})
			t.Logf("Read: %v (%v)", err, time.Since(start))
			assertRefused(t, err, code...)
			assert.Zero(t, n)
			assert.Less(t, time.Since(start), cfg.Timeout/2)
		})
	}
}

// TestSecurityACLDescribeConfigs: without DescribeConfigs on the topic, a
// restore cannot check that the topic keeps its events: it fails at once,
// naming the ACL it needs, unless AllowExpiringTopic skips the check.
func TestSecurityACLDescribeConfigs(t *testing.T) {
	b := newSecureBroker(t)
	cfg := b.tls("reader", b.topic(t, 2, grant{"reader", []kadm.ACLOperation{kadm.OpDescribe, kadm.OpRead}}))
	seed(t, b, cfg.Topic)

	r := rt.NewRepository(t, openSecure(t, cfg))
	start := time.Now()
	_, err := r.Restore(t.Context())
	t.Logf("Restore: %v (%v)", err, time.Since(start))
	assertRefused(t, err, kerr.TopicAuthorizationFailed)
	assert.ErrorContains(t, err, "needs DescribeConfigs on the topic")
	assert.NotErrorIs(t, err, provider.ErrNotRetained, "nothing is known of the topic's retention")
	assert.Less(t, time.Since(start), cfg.Timeout/2, "bounded well below the timeout")

	cfg.AllowExpiringTopic = true
	r = rt.Restored(t, openSecure(t, cfg))
	_, _, err = r.Get("acc")
	require.NoError(t, err)
}

// TestSecurityWrongPassword: a failed SCRAM login gives, within the
// timeout, an error that names the authentication failure (the client's
// error: librdkafka's ErrAuthentication, kerr.SaslAuthenticationFailed) and
// wraps provider.ErrUnavailable (the log cannot be reached with these
// credentials). Append waits for the delivery timeout and reports an unknown
// outcome: the client cannot tell that nothing left. Read fails at once.
func TestSecurityWrongPassword(t *testing.T) {
	b := newSecureBroker(t)
	topic := b.topic(t, 2, grant{b.scramUser, readWrite})
	cfg := b.scram(topic, "not-"+b.scramPassword)
	cfg.Timeout = 3 * time.Second
	p := openSecure(t, cfg)
	// The message timeout is checked once a second.
	limit := cfg.Timeout + 1500*time.Millisecond

	check := func(what string, err error, elapsed time.Duration) {
		t.Helper()
		t.Logf("%s: %v (%v)", what, err, elapsed)
		require.Error(t, err)
		assert.ErrorIs(t, err, provider.ErrUnavailable)
		assert.True(t, kafka.AuthenticationFailed(err), "names the failed login: %v", err)
		assert.Less(t, elapsed, limit)
	}

	r := rt.NewRepository(t, p)
	start := time.Now()
	_, err := r.Restore(t.Context())
	check("Restore", err, time.Since(start))

	start = time.Now()
	_, err = p.Append(t.Context(), []event.Record{testRecord("a", 1)})
	check("Append", err, time.Since(start))
	assert.ErrorIs(t, err, provider.ErrOutcomeUnknown)

	start = time.Now()
	err = p.Read(t.Context(), []provider.Range{{Partition: 0, Start: 0, End: 1}}, 0, func(provider.Batch) error { return nil })
	check("Read", err, time.Since(start))
}

// traits are what the secrets test expects of each client's logs.
var traits = map[string]struct {
	encryptedKey bool              // reads an encrypted client key (ssl.key.password)
	debug        map[string]string // Properties that turn its debug logs on
	loginFailed  string            // what its logs say of a failed SASL login
	configDump   string            // what its debug logs show of its configuration; "" none
}{
	kafka.Confluent: {encryptedKey: true, debug: map[string]string{"debug": "security,broker,conf,protocol,msg,metadata"},
		loginFailed: "SASL authentication error", configDump: "sasl.password"},
	// franz-go logs at slog's debug level; it has no configuration dump.
	kafka.Franz: {loginFailed: "SASL_AUTHENTICATION_FAILED"},
}

// TestSecuritySecretsNotLogged runs the provider over TLS with a client key
// (encrypted where the client reads one) and over SASL_SSL, with the
// client's debug logs on and every log line going to a buffer, through appends, reads, an ACL refusal and a
// failed login; then neither the buffer nor any error holds a password or a
// line of private key material.
func TestSecuritySecretsNotLogged(t *testing.T) {
	b := newSecureBroker(t)
	tr := traits[kafka.Client()]
	var logs kafkatest.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	wrongPassword := "wrong-" + b.scramPassword[:8] + "-secret"
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	topic := b.topic(t, 2, grant{"writer", readWrite}, grant{b.scramUser, readWrite})
	refused := b.topic(t, 1, grant{"writer", readOnly})
	tlsCfg := func(topic string) kafka.Config {
		c := b.tls("writer", topic)
		c.Properties = maps.Clone(tr.debug)
		if tr.encryptedKey {
			c.SSLKeyLocation = filepath.Join(b.tlsDir, "writer.enc.key")
			c.Properties["ssl.key.password"] = b.keyPassword
		}
		c.Logger = logger
		return c
	}
	saslCfg := func(password string) kafka.Config {
		c := b.scram(topic, password)
		c.Properties = tr.debug
		c.Logger = logger
		c.Timeout = 3 * time.Second
		return c
	}
	roundTrip := func(cfg kafka.Config) {
		p, err := kafka.New(cfg)
		require.NoError(t, err)
		r := rt.Restored(t, p, repository.WithLogger(logger))
		_, err = r.Create(t.Context(), "acc-"+cfg.SecurityProtocol, rt.Open("ada"))
		require.NoError(t, err)
		keep(p.Close())
	}

	roundTrip(tlsCfg(topic))
	roundTrip(saslCfg(b.scramPassword))

	p, err := kafka.New(tlsCfg(refused))
	require.NoError(t, err)
	_, err = p.Append(t.Context(), []event.Record{testRecord("a", 1)})
	require.Error(t, err)
	keep(err)
	keep(p.Close())

	p, err = kafka.New(saslCfg(wrongPassword))
	require.NoError(t, err)
	_, err = rt.NewRepository(t, p, repository.WithLogger(logger)).Restore(t.Context())
	require.Error(t, err)
	keep(err)
	_, err = p.Append(t.Context(), []event.Record{testRecord("a", 1)})
	require.Error(t, err)
	keep(err)
	keep(p.Close())

	// A Config printed or logged by a careless caller.
	for _, cfg := range []kafka.Config{tlsCfg(topic), saslCfg(b.scramPassword), saslCfg(wrongPassword)} {
		logger.Info("config", "cfg", cfg)
		keep(fmt.Errorf("%v %+v %#v %s", cfg, cfg, cfg, cfg))
	}

	out := logs.String()
	require.Contains(t, out, tr.loginFailed, "the failed login was logged")
	if tr.configDump != "" {
		require.Contains(t, out, tr.configDump, "the client's configuration dump was logged")
	}
	t.Logf("%d bytes of logs, %d errors", len(out), len(errs))

	secrets := map[string]string{
		"SCRAM password":       b.scramPassword,
		"wrong SCRAM password": wrongPassword,
		"client key password":  b.keyPassword,
	}
	for _, name := range []string{"writer.key", "writer.enc.key"} {
		for i, line := range keyLines(t, filepath.Join(b.tlsDir, name)) {
			secrets[fmt.Sprintf("%s line %d", name, i+1)] = line
		}
	}
	for name, secret := range secrets {
		assert.NotContains(t, out, secret, "%s in the logs", name)
		for _, err := range errs {
			assert.NotContains(t, err.Error(), secret, "%s in an error", name)
		}
	}
}

// keyLines returns the base64 lines of a PEM private key file.
func keyLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	require.NotEmpty(t, lines)
	return lines
}
