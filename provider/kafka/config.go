package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Config configures a Provider. The zero value is not valid: Brokers and Topic
// are required. [FromEnv] fills one from the environment.
type Config struct {
	// Brokers is the comma-separated bootstrap list, host:port each.
	Brokers string
	// Topic is the event topic.
	Topic    string
	ClientID string

	// SecurityProtocol is plaintext, ssl, sasl_plaintext or sasl_ssl.
	SecurityProtocol string
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	SASLMechanism string
	SASLUsername  string
	SASLPassword  string
	// SSLCALocation, SSLCertLocation and SSLKeyLocation are PEM file paths.
	SSLCALocation   string
	SSLCertLocation string
	SSLKeyLocation  string

	// Timeout bounds each wait on the brokers: metadata and offset queries,
	// the delivery of an append, and a read that makes no progress while no
	// broker answers. Past it, calls fail with provider.ErrUnavailable.
	// Default 10 s.
	Timeout time.Duration
	// Linger is how long the producer waits to fill a batch (librdkafka's
	// linger.ms). Concurrent appends share batches. Default 1 ms.
	Linger time.Duration
	// BatchSize is the read batch size when Read is asked for 0. Default
	// DefaultBatchSize.
	BatchSize int

	// Properties sets any other librdkafka property; they win over the
	// fields above. See librdkafka's CONFIGURATION.md.
	Properties map[string]string

	// Logger receives the client's logs and the provider's own; nil
	// discards them.
	Logger *slog.Logger
}

// DefaultBatchSize is the number of records per batch a read delivers unless
// told otherwise, chosen by measuring restores of 1 000 000 events (see the
// README's benchmarks).
const DefaultBatchSize = 2048

const (
	defaultTimeout = 10 * time.Second
	defaultLinger  = time.Millisecond
)

// FromEnv reads a Config from KAFKA_BROKERS (default localhost:9092),
// KAFKA_TOPIC, KAFKA_CLIENT_ID, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
// KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CA_LOCATION,
// KAFKA_CLIENT_CERT, KAFKA_CLIENT_CERT_KEY and KAFKA_TIMEOUT (a Go duration).
// Any variable KAFKA_PROPERTY_X_Y sets the librdkafka property x.y. It does
// not validate: call Validate, or let New do it.
func FromEnv() (Config, error) {
	c := Config{
		Brokers:          envOr("KAFKA_BROKERS", "localhost:9092"),
		Topic:            os.Getenv("KAFKA_TOPIC"),
		ClientID:         os.Getenv("KAFKA_CLIENT_ID"),
		SecurityProtocol: os.Getenv("KAFKA_SECURITY_PROTOCOL"),
		SASLMechanism:    os.Getenv("KAFKA_SASL_MECHANISM"),
		SASLUsername:     os.Getenv("KAFKA_SASL_USERNAME"),
		SASLPassword:     os.Getenv("KAFKA_SASL_PASSWORD"),
		SSLCALocation:    os.Getenv("KAFKA_SSL_CA_LOCATION"),
		SSLCertLocation:  os.Getenv("KAFKA_CLIENT_CERT"),
		SSLKeyLocation:   os.Getenv("KAFKA_CLIENT_CERT_KEY"),
	}
	if s := os.Getenv("KAFKA_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return c, fmt.Errorf("kafka: KAFKA_TIMEOUT %q: %w", s, err)
		}
		c.Timeout = d
	}
	const prefix = "KAFKA_PROPERTY_"
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if name, ok := strings.CutPrefix(k, prefix); ok && name != "" {
			if c.Properties == nil {
				c.Properties = make(map[string]string)
			}
			c.Properties[strings.ToLower(strings.ReplaceAll(name, "_", "."))] = v
		}
	}
	return c, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Brokers) == "" {
		errs = append(errs, errors.New("kafka: Brokers is empty"))
	}
	for b := range strings.SplitSeq(c.Brokers, ",") {
		if b = strings.TrimSpace(b); b != "" && !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("kafka: broker %q has no port", b))
		}
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("kafka: Topic is empty"))
	}
	switch strings.ToLower(c.SecurityProtocol) {
	case "", "plaintext", "ssl", "sasl_plaintext", "sasl_ssl":
	default:
		errs = append(errs, fmt.Errorf("kafka: SecurityProtocol %q is not plaintext, ssl, sasl_plaintext or sasl_ssl", c.SecurityProtocol))
	}
	if c.SASLMechanism != "" && !strings.HasPrefix(strings.ToLower(c.SecurityProtocol), "sasl") {
		errs = append(errs, fmt.Errorf("kafka: SASLMechanism %s needs SecurityProtocol sasl_ssl or sasl_plaintext", c.SASLMechanism))
	}
	if (c.SSLCertLocation == "") != (c.SSLKeyLocation == "") {
		errs = append(errs, errors.New("kafka: SSLCertLocation and SSLKeyLocation go together"))
	}
	if c.Timeout < 0 || c.Linger < 0 || c.BatchSize < 0 {
		errs = append(errs, errors.New("kafka: Timeout, Linger and BatchSize must not be negative"))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.Linger == 0 {
		c.Linger = defaultLinger
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// common returns the librdkafka properties shared by producers, consumers and
// admin clients.
func (c Config) common() ckafka.ConfigMap {
	m := ckafka.ConfigMap{
		"bootstrap.servers":                  c.Brokers,
		"socket.connection.setup.timeout.ms": int(max(c.Timeout, time.Second).Milliseconds()),
		"go.logs.channel.enable":             true,
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

// LogValue keeps secrets out of logs: slog calls it for a Config.
func (c Config) LogValue() slog.Value {
	props := make([]string, 0, len(c.Properties))
	for k := range c.Properties {
		props = append(props, k)
	}
	slices.Sort(props)
	return slog.GroupValue(
		slog.String("brokers", c.Brokers),
		slog.String("topic", c.Topic),
		slog.String("client_id", c.ClientID),
		slog.String("security_protocol", c.SecurityProtocol),
		slog.String("sasl_mechanism", c.SASLMechanism),
		slog.String("sasl_username", c.SASLUsername),
		slog.Bool("sasl_password_set", c.SASLPassword != ""),
		slog.Duration("timeout", c.Timeout),
		slog.Any("properties", props),
	)
}

// String keeps secrets out of fmt output.
func (c Config) String() string {
	return fmt.Sprintf("kafka.Config{Brokers:%q Topic:%q SecurityProtocol:%q SASLMechanism:%q SASLUsername:%q SASLPassword:%s}",
		c.Brokers, c.Topic, c.SecurityProtocol, c.SASLMechanism, c.SASLUsername, redacted(c.SASLPassword))
}

func redacted(s string) string {
	if s == "" {
		return `""`
	}
	return "[redacted]"
}

// GoString keeps secrets out of %#v.
func (c Config) GoString() string { return c.String() }
