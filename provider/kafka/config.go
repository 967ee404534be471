//go:build cgo

package kafka

import (
	"strings"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

// Config configures a Provider; provider/franz reads the same one. The zero
// value is not valid: Brokers and Topic are required. [FromEnv] fills one
// from the environment.
type Config = kafkaconfig.Config

// DefaultBatchSize is the number of records per batch a read delivers unless
// told otherwise.
const DefaultBatchSize = kafkaconfig.DefaultBatchSize

const defaultTimeout = kafkaconfig.DefaultTimeout

// FromEnv reads a Config from the environment: see [kafkaconfig.FromEnv].
func FromEnv() (Config, error) { return kafkaconfig.FromEnv() }

// common returns the librdkafka properties shared by producers, consumers and
// admin clients.
func common(c Config) ckafka.ConfigMap {
	m := ckafka.ConfigMap{
		"bootstrap.servers":                  c.Brokers,
		"socket.connection.setup.timeout.ms": int(max(c.Timeout, time.Second).Milliseconds()),
		// A request to a hung broker (paused, half-open connection) holds
		// its connection for socket.timeout.ms, 60 s by default, before
		// librdkafka gives up on it and looks for the new leader: a group
		// member's takeover stalled that long behind one such ListOffsets.
		"socket.timeout.ms":      int(max(c.Timeout, 10*time.Second).Milliseconds()),
		"go.logs.channel.enable": true,
	}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set("client.id", c.ClientID)
	set("security.protocol", strings.ToLower(c.SecurityProtocol))
	set("sasl.mechanisms", c.SASLMechanism)
	set("sasl.username", c.SASLUsername)
	set("sasl.password", c.SASLPassword)
	set("ssl.ca.location", c.SSLCALocation)
	set("ssl.certificate.location", c.SSLCertLocation)
	set("ssl.key.location", c.SSLKeyLocation)
	for k, v := range c.Properties {
		m[k] = v
	}
	return m
}
