package security_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
)

// secureBroker describes the broker of `docker/kafka-local start --secure`
// (scripts/test-security.sh starts one): ACLs on, an SSL listener that
// requires client certificates (principal User:<CN>), a SASL_SSL listener
// with SCRAM, and a PLAINTEXT listener whose anonymous principal is a super
// user, used here only to create topics and ACLs.
type secureBroker struct {
	admin, ssl, sasl string
	ca, tlsDir       string
	keyPassword      string
	scramMechanism   string
	scramUser        string
	scramPassword    string
}

var secureTopicSeq atomic.Int64

// newSecureBroker reads the KAFKA_SECURE_* variables `kafka-local
// secure-env` prints, or skips: neither kfake nor `make test`'s broker has
// TLS, SASL or ACLs. Under CI=true a missing secured broker fails instead
// (as kafkatest.Brokers does).
func newSecureBroker(t *testing.T) secureBroker {
	t.Helper()
	get := func(k string) string { return os.Getenv("KAFKA_SECURE_" + k) }
	b := secureBroker{
		admin: get("ADMIN"), ssl: get("SSL"), sasl: get("SASL"),
		ca: get("CA"), tlsDir: get("TLS_DIR"), keyPassword: get("KEY_PASSWORD"),
		scramMechanism: get("SCRAM_MECHANISM"), scramUser: get("SCRAM_USER"), scramPassword: get("SCRAM_PASSWORD"),
	}
	if b.ssl == "" {
		const how = "no secured broker: KAFKA_SECURE_SSL is unset (run `make test-security`)"
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: " + how)
		}
		t.Skip(how)
	}
	for k, v := range map[string]string{"ADMIN": b.admin, "SASL": b.sasl, "CA": b.ca, "TLS_DIR": b.tlsDir,
		"KEY_PASSWORD": b.keyPassword, "SCRAM_MECHANISM": b.scramMechanism, "SCRAM_USER": b.scramUser, "SCRAM_PASSWORD": b.scramPassword} {
		require.NotEmpty(t, v, "KAFKA_SECURE_%s is unset while KAFKA_SECURE_SSL is set", k)
	}
	return b
}

// tls returns a provider configuration for topic over the SSL listener,
// authenticated by the client certificate CN=name (principal User:name).
func (b secureBroker) tls(name, topic string) kafka.Config {
	return kafka.Config{
		Brokers:          b.ssl,
		Topic:            topic,
		SecurityProtocol: "ssl",
		SSLCALocation:    b.ca,
		SSLCertLocation:  filepath.Join(b.tlsDir, name+".pem"),
		SSLKeyLocation:   filepath.Join(b.tlsDir, name+".key"),
		Timeout:          10 * time.Second,
	}
}

// scram returns a provider configuration for topic over the SASL_SSL
// listener as the SCRAM user, with the given password.
func (b secureBroker) scram(topic, password string) kafka.Config {
	return kafka.Config{
		Brokers:          b.sasl,
		Topic:            topic,
		SecurityProtocol: "sasl_ssl",
		SASLMechanism:    b.scramMechanism,
		SASLUsername:     b.scramUser,
		SASLPassword:     password,
		SSLCALocation:    b.ca,
		Timeout:          10 * time.Second,
	}
}

// grant is a set of allowed operations for a principal on a topic.
type grant struct {
	principal string // e.g. "writer", "alice"
	ops       []kadm.ACLOperation
}

var (
	// DescribeConfigs lets a restore check that the topic keeps its
	// events (CheckRetention).
	readWrite = []kadm.ACLOperation{kadm.OpDescribe, kadm.OpDescribeConfigs, kadm.OpRead, kadm.OpWrite}
	readOnly  = []kadm.ACLOperation{kadm.OpDescribe, kadm.OpDescribeConfigs, kadm.OpRead}
)

// topicName returns a new topic name for the test.
func topicName(t *testing.T) string {
	name := fmt.Sprintf("sec-%s-%d-%d", strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()), time.Now().UnixNano(), secureTopicSeq.Add(1))
	if len(name) > 200 {
		name = name[len(name)-200:]
	}
	return name
}

// topic creates a topic of the given partitions through the admin listener,
// allows each grant's operations on it, and returns once the broker's
// authorizer has them.
func (b secureBroker) topic(t *testing.T, partitions int, grants ...grant) string {
	t.Helper()
	name := topicName(t)
	admin := b.adminClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopic(ctx, int32(partitions), 1,
		map[string]*string{"retention.ms": new("-1"), "retention.bytes": new("-1")}, name) // as EnsureTopic creates them
	if err == nil {
		err = res.Err
	}
	require.NoError(t, err, "create topic %s", name)
	b.allow(t, name, grants...)
	return name
}

func (b secureBroker) adminClient(t *testing.T) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.admin))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// allow creates literal ACLs on topic name (which need not exist yet) for
// each grant, and returns once the broker's authorizer has them.
func (b secureBroker) allow(t *testing.T, name string, grants ...grant) {
	t.Helper()
	admin := b.adminClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	want := 0
	for _, g := range grants {
		if len(g.ops) == 0 {
			continue
		}
		want += len(g.ops)
		created, err := admin.CreateACLs(ctx, kadm.NewACLs().Topics(name).ResourcePatternType(kadm.ACLPatternLiteral).
			Allow("User:"+g.principal).AllowHosts("*").Operations(g.ops...))
		require.NoError(t, err)
		for _, r := range created {
			require.NoError(t, r.Err, "create ACLs on %s", name)
		}
	}
	// ACLs reach the authorizer through the metadata log: poll until the
	// broker describes them all.
	filter := kadm.NewACLs().Topics(name).ResourcePatternType(kadm.ACLPatternLiteral).
		Allow().AllowHosts().Operations(kadm.OpAny)
	for {
		described, err := admin.DescribeACLs(ctx, filter)
		require.NoError(t, err)
		n := 0
		for _, d := range described {
			require.NoError(t, d.Err)
			n += len(d.Described)
		}
		if n == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ACLs on %s: broker describes %d of %d", name, n, want)
		case <-time.After(50 * time.Millisecond): // polling the authorizer, bounded by ctx
		}
	}
}
