// Package kafka is the [provider.Provider] on Apache Kafka, built on
// confluent-kafka-go v2 (librdkafka). It is the only package of rehydrate that
// needs cgo.
//
//	cfg, err := kafka.FromEnv() // KAFKA_BROKERS, KAFKA_TOPIC, security, KAFKA_TIMEOUT, …
//	cfg.Topic = cmp.Or(cfg.Topic, "users")
//	p, err := kafka.New(cfg)    // validates; contacts no broker yet
//	defer p.Close()             // flushes appends in flight, bounded by cfg.Timeout
//	err = p.EnsureTopic(ctx, kafka.TopicSpec{Partitions: 6, ReplicationFactor: 3})
//
// # Reads
//
// Read assigns the partitions directly: no consumer group is joined, nothing
// waits for a rebalance and no offset is committed (librdkafka still wants a
// group.id; a throwaway one is set). Isolation is read_committed, so the end
// offsets Partitions reports are last stable offsets and records of aborted
// transactions are skipped. A partition is done when the consumer's position
// reaches the range's end, so compaction gaps, transaction markers and empty
// partitions end cleanly. Polls block in librdkafka (no busy loop); records
// are handed over in batches of one partition, in offset order, and decoding
// is left to the caller's goroutines. Any error that is not transient stops
// the read naming the partition; a read that makes no progress for
// Config.Timeout while no broker answers fails with provider.ErrUnavailable.
// An offset below the log start (expired by retention) is an error: the
// consumer never jumps silently to another offset.
//
// # Appends
//
// The producer is idempotent with acks=all and partitions by murmur2 of the
// key, as Kafka's Java client does. Append returns once every record's
// delivery report is in. A report that proves the record was not written
// (the queue was full, the broker refused it) gives a plain error;
// provider.ErrOutcomeUnknown marks the others (a timeout: librdkafka cannot
// tell whether the broker wrote it). Concurrent appends share the producer's
// batches (Config.Linger).
//
// # Security
//
// TLS is SecurityProtocol "ssl" with SSLCALocation and, for a client
// certificate, SSLCertLocation and SSLKeyLocation (PEM files; an encrypted
// key takes Properties["ssl.key.password"]); SASL over TLS is "sasl_ssl" with
// SASLMechanism (e.g. SCRAM-SHA-512), SASLUsername and SASLPassword.
//
// Under ACLs the principal needs Describe and Read on the topic to restore,
// Write to append, and Create for EnsureTopic; no group ACL (the read's
// throwaway group is refused its coordinator harmlessly). Without Write on
// any topic the broker refuses the idempotent producer its id: every Append
// then fails until the provider is recreated. A refusal comes back at once as
// a plain error naming the authorization failure (nothing was written: not
// provider.ErrOutcomeUnknown, nor provider.ErrUnavailable). A failed TLS
// handshake or SASL login wraps provider.ErrUnavailable and names the
// failure: Read fails at once, Partitions and Append after Config.Timeout (an
// Append also with provider.ErrOutcomeUnknown, which librdkafka cannot rule
// out); errors.As finds the client's kafka.Error with code ErrAuthentication
// or ErrSsl.
//
// Secrets in Config never appear in its String, GoString or slog output, nor
// in errors or logs (librdkafka redacts them from its debug output).
// `make test-security` checks all of this against a secured broker.
package kafka
