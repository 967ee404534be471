// Package kafkaclient picks the Kafka provider, confluent-kafka-go
// (provider/kafka, cgo) or franz-go (provider/franz, pure Go), by name: from
// KAFKA_CLIENT ([New]) or as the caller says ([Open]). A service that wants
// one client imports its provider directly (examples/minimal-writer imports
// provider/franz); one that lets its operator choose, or runs its tests with
// both (the example writer and reader, the CLI, the fault and security
// suites), imports this package. A build without cgo has only franz.
//
// It is a module of its own (github.com/rehydrate/rehydrate/provider/kafkaclient)
// because it requires both clients' modules. It reads like provider/kafka
// (Config, FromEnv, TopicSpec, New, *Provider), so that a program switches
// from that package to either client by its import line alone:
//
//	import kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
package kafkaclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/franz"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

// The clients' names, as KAFKA_CLIENT takes them.
const (
	Confluent = "confluent"
	Franz     = "franz"
)

// Config configures either provider.
type Config = kafkaconfig.Config

// TopicSpec describes a topic for EnsureTopic.
type TopicSpec = kafkaconfig.TopicSpec

// FromEnv reads a Config from the environment: see [kafkaconfig.FromEnv].
func FromEnv() (Config, error) { return kafkaconfig.FromEnv() }

// Kafka is what both Kafka providers offer.
type Kafka interface {
	provider.Provider
	provider.PartitionAppender
	provider.RetentionChecker
	provider.Grouper
	// EnsureTopic creates the provider's topic unless it exists.
	EnsureTopic(ctx context.Context, spec TopicSpec) error
	// Topic returns the provider's topic.
	Topic() string
}

// Provider is the provider of the chosen client. Its methods are the
// client's; type assertions for the optional capabilities of package
// provider succeed on it.
type Provider struct {
	Kafka
	// Client is the client's name.
	Client string
}

var _ Kafka = (*franz.Provider)(nil)

// Client returns KAFKA_CLIENT, or the default: confluent where this build
// has it, else franz.
func Client() string {
	return cmp.Or(os.Getenv("KAFKA_CLIENT"), Names()[0])
}

// New returns a provider of the client KAFKA_CLIENT names on cfg.
func New(cfg Config) (*Provider, error) { return Open(Client(), cfg) }

// Open returns a provider of the named client on cfg.
func Open(client string, cfg Config) (*Provider, error) {
	var k Kafka
	var err error
	switch client {
	case Franz:
		k, err = franz.New(cfg)
	case Confluent:
		k, err = newConfluent(cfg)
	default:
		return nil, fmt.Errorf("kafkaclient: unknown KAFKA_CLIENT %q: want one of %v", client, Names())
	}
	if err != nil {
		return nil, err
	}
	return &Provider{Kafka: k, Client: client}, nil
}

// Code returns the Kafka protocol error code err carries (e.g. 29,
// TOPIC_AUTHORIZATION_FAILED), from either client's error type.
func Code(err error) (code int16, ok bool) {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code, true
	}
	return confluentCode(err)
}

// AuthenticationFailed reports whether err says that a SASL login or TLS
// handshake failed, in either client's words.
func AuthenticationFailed(err error) bool {
	return errors.Is(err, kerr.SaslAuthenticationFailed) || confluentAuthenticationFailed(err)
}
