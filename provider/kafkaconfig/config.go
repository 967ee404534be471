// Package kafkaconfig is the configuration both Kafka providers read:
// [github.com/rehydrate/rehydrate/provider/kafka] (confluent-kafka-go,
// cgo) and [github.com/rehydrate/rehydrate/provider/franz] (franz-go, pure
// Go). One Config, one FromEnv, one Validate: a service switches clients
// without touching its environment. The package needs no cgo.
package kafkaconfig

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config configures a Kafka provider. The zero value is not valid: Brokers and Topic
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

	// SessionTimeout is how long the group waits for a silent member
	// (JoinGroup) before it hands the member's partitions to the others
	// (librdkafka's session.timeout.ms; the broker allows 6 s to 30 min by
	// default). Default 10 s. Members are static (GroupConfig.Instance), so
	// an instance restarted under its name takes its partitions back at
	// once whatever this is: it bounds only how long the partitions of an
	// instance that does not come back (a lost node) go unserved. Shorter
	// notices that sooner; longer rides out longer pauses (GC, a network
	// blip) without moving partitions, since a member wrongly dropped is
	// fenced (safe) but costs a handover.
	SessionTimeout time.Duration
	// TransactionTimeout bounds a group member's transactions
	// (transaction.timeout.ms): the broker aborts one left open longer. An
	// instance that dies with a transaction open blocks read-committed
	// readers of its partitions, and a new owner's takeover, until then,
	// unless it restarts under the same GroupConfig.Instance first. At
	// least 1 s. Default 10 s.
	TransactionTimeout time.Duration
	// GroupProducers is the number of transactional producers a group
	// member appends through, its lanes. Each lane runs one transaction at
	// a time, and the lanes take turns: n lanes run at most n−1
	// transactions at once (one with one lane), so that a lane rests for
	// at least one other's transaction before its next, by which time the
	// coordinator has written its last one's markers (with one lane, up to
	// half of the transactions met them and waited the broker's 20 ms
	// retry). With three or more, one lane produces its transaction while
	// another commits. Keep it constant across an instance's restarts, or
	// the transactions its predecessor left open on the producers it no
	// longer has wait for TransactionTimeout. At most 64. Default 2: one
	// transaction at a time, alternating, committed 0.9–2.6× the commands
	// of one lane, and as many as three lanes or more (README, "Commands
	// in fenced transactions").
	GroupProducers int

	// AllowExpiringTopic lets a repository restore from a topic that can
	// lose events: records expire (retention.ms or retention.bytes other
	// than -1 under cleanup.policy delete) or are compacted away
	// (cleanup.policy compact). Without it, CheckRetention reads the
	// topic's effective configuration (one DescribeConfigs per Provider,
	// which under ACLs needs DescribeConfigs on the topic) and refuses such
	// a topic, naming the setting and the fix. With it, nothing is asked,
	// and the restore itself is all that stands between you and a wrong
	// state: it fails, naming the partition and its log start offset, as
	// soon as a partition no longer starts at offset 0 (no snapshot can
	// cover the events below it yet). Compaction removes records without
	// moving the log start, so a compacted topic fails at the first
	// version gap instead, or not at all where it removed every event of
	// an aggregate but its last. Leave it off for a service's event topic.
	AllowExpiringTopic bool

	// Properties sets any other librdkafka property; they win over the
	// fields above, but not over the settings a group member's fencing
	// rests on (see provider/kafka's documentation). They reach every
	// client (producers, consumers, admin). See librdkafka's
	// CONFIGURATION.md. provider/franz, which is not librdkafka, reads only
	// queue.buffering.max.messages and logs the others as ignored.
	Properties map[string]string

	// Logger receives the client's logs and the provider's own; nil
	// discards them.
	Logger *slog.Logger
}

// DefaultBatchSize is the number of records per batch a read delivers unless
// told otherwise, chosen by measuring restores of 1 000 000 events (see the
// README's benchmarks).
const DefaultBatchSize = 2048

// DefaultTimeout is Config.Timeout's default; MaxGroupProducers bounds
// Config.GroupProducers.
const (
	DefaultTimeout            = 10 * time.Second
	defaultLinger             = time.Millisecond
	defaultSessionTimeout     = 10 * time.Second
	defaultTransactionTimeout = 10 * time.Second
	defaultGroupProducers     = 2
	MaxGroupProducers         = 64
)

// FromEnv reads a Config from KAFKA_BROKERS (default localhost:9092),
// KAFKA_TOPIC, KAFKA_CLIENT_ID, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
// KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CA_LOCATION,
// KAFKA_CLIENT_CERT, KAFKA_CLIENT_CERT_KEY, KAFKA_TIMEOUT,
// KAFKA_SESSION_TIMEOUT, KAFKA_TRANSACTION_TIMEOUT (Go durations),
// KAFKA_GROUP_PRODUCERS (an integer) and KAFKA_ALLOW_EXPIRING_TOPIC (true or
// false, as strconv.ParseBool reads it). Any variable KAFKA_PROPERTY_X_Y
// sets the librdkafka property x.y. It does not validate: call Validate, or let New do it.
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
	for _, d := range []struct {
		env string
		to  *time.Duration
	}{
		{"KAFKA_TIMEOUT", &c.Timeout},
		{"KAFKA_SESSION_TIMEOUT", &c.SessionTimeout},
		{"KAFKA_TRANSACTION_TIMEOUT", &c.TransactionTimeout},
	} {
		if s := os.Getenv(d.env); s != "" {
			v, err := time.ParseDuration(s)
			if err != nil {
				return c, fmt.Errorf("kafka: %s %q: %w", d.env, s, err)
			}
			*d.to = v
		}
	}
	if s := os.Getenv("KAFKA_GROUP_PRODUCERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return c, fmt.Errorf("kafka: KAFKA_GROUP_PRODUCERS %q: %w", s, err)
		}
		c.GroupProducers = n
	}
	if s := os.Getenv("KAFKA_ALLOW_EXPIRING_TOPIC"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return c, fmt.Errorf("kafka: KAFKA_ALLOW_EXPIRING_TOPIC %q: %w", s, err)
		}
		c.AllowExpiringTopic = b
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
	if c.Timeout < 0 || c.Linger < 0 || c.BatchSize < 0 || c.SessionTimeout < 0 {
		errs = append(errs, errors.New("kafka: Timeout, Linger, BatchSize and SessionTimeout must not be negative"))
	}
	if c.TransactionTimeout != 0 && c.TransactionTimeout < time.Second {
		errs = append(errs, fmt.Errorf("kafka: TransactionTimeout %v is below 1s", c.TransactionTimeout))
	}
	if c.GroupProducers < 0 || c.GroupProducers > MaxGroupProducers {
		errs = append(errs, fmt.Errorf("kafka: GroupProducers %d is not within 1..%d (0 means %d)", c.GroupProducers, MaxGroupProducers, defaultGroupProducers))
	}
	return errors.Join(errs...)
}

// WithDefaults returns c with every zero field that has a default set to
// it, and a Logger that discards when it has none.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Linger == 0 {
		c.Linger = defaultLinger
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = defaultSessionTimeout
	}
	if c.TransactionTimeout == 0 {
		c.TransactionTimeout = defaultTransactionTimeout
	}
	if c.GroupProducers == 0 {
		c.GroupProducers = defaultGroupProducers
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
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
		slog.Duration("session_timeout", c.SessionTimeout),
		slog.Duration("transaction_timeout", c.TransactionTimeout),
		slog.Int("group_producers", c.GroupProducers),
		slog.Bool("allow_expiring_topic", c.AllowExpiringTopic),
		slog.Any("properties", props),
	)
}

// String keeps secrets out of fmt output.
func (c Config) String() string {
	return fmt.Sprintf("kafkaconfig.Config{Brokers:%q Topic:%q SecurityProtocol:%q SASLMechanism:%q SASLUsername:%q SASLPassword:%s}",
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
