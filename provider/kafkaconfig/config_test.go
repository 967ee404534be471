package kafkaconfig_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

func TestFromEnv(t *testing.T) {
	for k, v := range map[string]string{
		"KAFKA_BROKERS":                         "a:1,b:2",
		"KAFKA_TOPIC":                           "users",
		"KAFKA_CLIENT_ID":                       "writer",
		"KAFKA_SECURITY_PROTOCOL":               "SASL_SSL",
		"KAFKA_SASL_MECHANISM":                  "SCRAM-SHA-512",
		"KAFKA_SASL_USERNAME":                   "alice",
		"KAFKA_SASL_PASSWORD":                   "s3cret-pw",
		"KAFKA_SSL_CA_LOCATION":                 "/ca.pem",
		"KAFKA_CLIENT_CERT":                     "/cert.pem",
		"KAFKA_CLIENT_CERT_KEY":                 "/key.pem",
		"KAFKA_TIMEOUT":                         "3s",
		"KAFKA_SESSION_TIMEOUT":                 "7s",
		"KAFKA_TRANSACTION_TIMEOUT":             "15s",
		"KAFKA_GROUP_PRODUCERS":                 "3",
		"KAFKA_ALLOW_EXPIRING_TOPIC":            "true",
		"KAFKA_PROPERTY_STATISTICS_INTERVAL_MS": "1000",
	} {
		t.Setenv(k, v)
	}
	cfg, err := kafkaconfig.FromEnv()
	require.NoError(t, err)
	assert.Equal(t, kafkaconfig.Config{
		Brokers: "a:1,b:2", Topic: "users", ClientID: "writer",
		SecurityProtocol: "SASL_SSL", SASLMechanism: "SCRAM-SHA-512", SASLUsername: "alice", SASLPassword: "s3cret-pw",
		SSLCALocation: "/ca.pem", SSLCertLocation: "/cert.pem", SSLKeyLocation: "/key.pem",
		Timeout: 3 * time.Second, SessionTimeout: 7 * time.Second, TransactionTimeout: 15 * time.Second, GroupProducers: 3,
		AllowExpiringTopic: true,
		Properties:         map[string]string{"statistics.interval.ms": "1000"},
	}, cfg)
	require.NoError(t, cfg.Validate())

	for env, bad := range map[string]string{"KAFKA_TIMEOUT": "soon", "KAFKA_TRANSACTION_TIMEOUT": "10", "KAFKA_GROUP_PRODUCERS": "two", "KAFKA_ALLOW_EXPIRING_TOPIC": "yes please"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, bad)
			_, err = kafkaconfig.FromEnv()
			assert.ErrorContains(t, err, env)
		})
	}
}

func TestFromEnvDefaultsToLocalhost(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	cfg, err := kafkaconfig.FromEnv()
	require.NoError(t, err)
	assert.Equal(t, "localhost:9092", cfg.Brokers)
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := kafkaconfig.Config{
		Brokers: "nohost", SecurityProtocol: "carrier-pigeon", SASLMechanism: "PLAIN",
		SSLCertLocation: "/cert.pem", Timeout: -time.Second,
		TransactionTimeout: time.Millisecond, GroupProducers: 65,
	}.Validate()
	require.Error(t, err)
	for _, want := range []string{"no port", "Topic is empty", "carrier-pigeon", "SASLMechanism", "SSLKeyLocation", "negative",
		"TransactionTimeout", "GroupProducers"} {
		assert.ErrorContains(t, err, want)
	}
}

func TestSecretsStayOutOfLogsAndStrings(t *testing.T) {
	cfg := kafkaconfig.Config{Brokers: "a:1", Topic: "t", SASLUsername: "alice", SASLPassword: "s3cret-pw",
		SecurityProtocol: "sasl_ssl", SASLMechanism: "SCRAM-SHA-512",
		Properties: map[string]string{"ssl.key.password": "k3y-pw"}}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "kafka", cfg)
	out := buf.String() + fmt.Sprint(cfg) + fmt.Sprintf("%v %+v %s %#v", cfg, cfg, cfg, cfg)
	assert.NotContains(t, out, "s3cret-pw")
	assert.NotContains(t, out, "k3y-pw")
	assert.True(t, strings.Contains(out, "alice"), "non-secret fields are shown")
}
