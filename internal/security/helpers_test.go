package kafka_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider/kafka"
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
// TLS, SASL or ACLs.
func newSecureBroker(t *testing.T) secureBroker {
	t.Helper()
	get := func(k string) string { return os.Getenv("KAFKA_SECURE_" + k) }
	b := secureBroker{
		admin: get("ADMIN"), ssl: get("SSL"), sasl: get("SASL"),
		ca: get("CA"), tlsDir: get("TLS_DIR"), keyPassword: get("KEY_PASSWORD"),
		scramMechanism: get("SCRAM_MECHANISM"), scramUser: get("SCRAM_USER"), scramPassword: get("SCRAM_PASSWORD"),
	}
	if b.ssl == "" {
		t.Skip("no secured broker: KAFKA_SECURE_SSL is unset (run `make test-security`)")
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
	ops       []ckafka.ACLOperation
}

var (
	// DescribeConfigs lets a restore check that the topic keeps its
	// events (CheckRetention).
	readWrite = []ckafka.ACLOperation{ckafka.ACLOperationDescribe, ckafka.ACLOperationDescribeConfigs, ckafka.ACLOperationRead, ckafka.ACLOperationWrite}
	readOnly  = []ckafka.ACLOperation{ckafka.ACLOperationDescribe, ckafka.ACLOperationDescribeConfigs, ckafka.ACLOperationRead}
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
	res, err := admin.CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: name, NumPartitions: partitions, ReplicationFactor: 1,
		Config: map[string]string{"retention.ms": "-1", "retention.bytes": "-1"}}}) // as EnsureTopic creates them
	require.NoError(t, err)
	for _, r := range res {
		require.Equal(t, ckafka.ErrNoError, r.Error.Code(), "create topic %s: %v", name, r.Error)
	}
	b.allow(t, name, grants...)
	return name
}

func (b secureBroker) adminClient(t *testing.T) *ckafka.AdminClient {
	t.Helper()
	admin, err := ckafka.NewAdminClient(&ckafka.ConfigMap{"bootstrap.servers": b.admin})
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	return admin
}

// allow creates literal ACLs on topic name (which need not exist yet) for
// each grant, and returns once the broker's authorizer has them.
func (b secureBroker) allow(t *testing.T, name string, grants ...grant) {
	t.Helper()
	admin := b.adminClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var acls ckafka.ACLBindings
	for _, g := range grants {
		for _, op := range g.ops {
			acls = append(acls, ckafka.ACLBinding{
				Type: ckafka.ResourceTopic, Name: name, ResourcePatternType: ckafka.ResourcePatternTypeLiteral,
				Principal: "User:" + g.principal, Host: "*", Operation: op, PermissionType: ckafka.ACLPermissionTypeAllow,
			})
		}
	}
	if len(acls) > 0 {
		created, err := admin.CreateACLs(ctx, acls)
		require.NoError(t, err)
		for _, r := range created {
			require.Equal(t, ckafka.ErrNoError, r.Error.Code(), "create ACLs on %s: %v", name, r.Error)
		}
	}
	// ACLs reach the authorizer through the metadata log: poll until the
	// broker describes them all.
	filter := ckafka.ACLBindingFilter{
		Type: ckafka.ResourceTopic, Name: name, ResourcePatternType: ckafka.ResourcePatternTypeLiteral,
		Operation: ckafka.ACLOperationAny, PermissionType: ckafka.ACLPermissionTypeAny,
	}
	for {
		d, err := admin.DescribeACLs(ctx, filter)
		require.NoError(t, err)
		if len(d.ACLBindings) == len(acls) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ACLs on %s: broker describes %d of %d", name, len(d.ACLBindings), len(acls))
		case <-time.After(50 * time.Millisecond): // polling the authorizer, bounded by ctx
		}
	}
}
