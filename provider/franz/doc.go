// Package franz is the [provider.Provider] on Apache Kafka built on franz-go
// (pure Go: it builds with CGO_ENABLED=0). It has the semantics of
// [github.com/rehydrate/rehydrate/provider/kafka] (confluent-kafka-go) and
// reads the same configuration ([kafkaconfig.Config], [FromEnv]): a service
// switches clients without touching its environment, and both pass the same
// suites (providertest, repositorytest, the fault and security tests).
// Config.Properties are librdkafka properties: this provider reads only
// queue.buffering.max.messages (the most records its producer holds; an
// append beyond them is refused at once with provider.ErrUnavailable, as
// librdkafka's full queue refuses it) and logs the others as ignored.
//
//	cfg, err := franz.FromEnv() // KAFKA_BROKERS, KAFKA_TOPIC, security, KAFKA_TIMEOUT, …
//	cfg.Topic = cmp.Or(cfg.Topic, "users")
//	p, err := franz.New(cfg)    // validates; contacts no broker yet
//	defer p.Close()             // flushes appends in flight, bounded by cfg.Timeout
//	err = p.EnsureTopic(ctx, franz.TopicSpec{Partitions: 6, ReplicationFactor: 3})
//
// # Reads
//
// Read assigns nothing and joins no group: it sends Fetch requests itself,
// read_committed, to each partition's leader, and decodes each answer with
// kgo.ProcessFetchPartition. The reason is the end of a partition: it is a
// position, not the last record seen (transaction markers, records of
// aborted transactions and compaction gaps hold offsets no reader sees), and
// kgo's consumer does not tell its position, where ProcessFetchPartition
// returns the offset after everything it decoded. A partition is done when
// that position reaches the range's end. One goroutine fetches while the
// caller's goroutine hands the previous answer over in batches, so the
// network and the decoding overlap. An offset below the log start fails the
// read naming partition and offset (never a jump to another offset); any
// other error that is not transient fails it naming the partition; a read
// that makes no progress for Config.Timeout while no broker answers fails
// with provider.ErrUnavailable, and a failed TLS handshake or SASL login
// fails it at once, also with provider.ErrUnavailable.
//
// # A topic that keeps its events
//
// As provider/kafka: EnsureTopic creates the topic with retention.ms=-1,
// retention.bytes=-1 and cleanup.policy=delete; CheckRetention reads the
// effective configuration once per Provider (DescribeConfigs) and refuses a
// topic whose records can expire or be compacted away, naming the setting
// and the fix (the words are shared: kafkaconfig.Losses and Refusal).
//
// # Appends
//
// The producer is idempotent with acks=all and partitions by murmur2 of the
// key, as Kafka's Java client, librdkafka's murmur2 partitioner and
// provider/kafka do ([provider.PartitionFor]). Append hands the records to
// kgo and waits for every promise; the caller's context counts only until
// then. Config.Timeout bounds the wait: it is kgo's record delivery timeout,
// and kgo is allowed to fail records in flight at it
// (AllowIdempotentProduceCancellation), as librdkafka does at
// message.timeout.ms. Without that, kgo keeps retrying a record whose
// request got no clear answer (the leader timed out waiting for replicas)
// until the brokers come back: with two of three brokers down an append
// never returned. A record failed so may still have been written (the
// leader appended it before it timed out): provider.ErrOutcomeUnknown; kgo
// bumps the producer epoch and never resends it. Errors are
// classified by one table (classify): a refusal that proves nothing was
// written (too large, not authorised, no such partition) is a plain error;
// a failure to reach the brokers wraps provider.ErrUnavailable; any record
// that may have been written makes the error provider.ErrOutcomeUnknown.
// A small record refused only for the batch it shared with one too large
// fails unavailable, as in provider/kafka (kafkaconfig.MessageLimit).
// AppendPartition asks the topic's partition count first, because kgo fails
// a record for a partition the topic does not have with an error it gives no
// sentinel for.
//
// # Groups and fenced appends
//
// Provider implements provider.Grouper with the mechanism and the argument
// of provider/kafka's documentation ("Groups and fenced appends"); only how
// each step is done differs:
//
//   - Membership: a kgo client of its own joins the group (classic
//     protocol, cooperative-sticky balancer) with the member's topic paused
//     before anything is assigned, so it never fetches. kgo runs the
//     heartbeats and calls OnPartitionsAssigned, OnPartitionsRevoked and
//     OnPartitionsLost on its own goroutine; there is no poll loop to keep
//     alive and no max.poll.interval.ms to be dropped for. Its client.id
//     carries the member's Address for Owners, as in provider/kafka.
//   - Ownership held through the commit, and the lanes: package kafkagroup,
//     shared with provider/kafka: a revocation marks the partitions not
//     owned, waits for the appends in flight on any lane, calls OnRevoked,
//     and only then returns to kgo, which rejoins and lets the group move
//     them (cooperative). Appends queue for the lane whose turn it is of
//     GroupProducers transactional clients (at most GroupProducers−1
//     transactions at once: kafkagroup.InFlight), transactional ids
//     "<group>-<instance>-<n>".
//   - The fence: kgo's own way to put offsets in a transaction
//     (GroupTransactSession) sends the metadata of a consuming client's
//     group; the member sends raw requests instead: TxnOffsetCommit for
//     every partition written at the end of what the transaction wrote
//     there (a real offset), once the records are written (not while they
//     are produced, as provider/kafka does: txnClient says why), with the
//     generation and member id read from the group client just before
//     (kgo's GroupMetadata, fresh), retried while the coordinator answers a
//     retriable error or CONCURRENT_TRANSACTIONS, preceded by
//     AddOffsetsToTxn only where the cluster does not run transactions v2
//     (KIP-890 part 2, transaction.version 2: kgo then folds the partitions'
//     registration into the produce requests, and TxnOffsetCommit v5 adds
//     the group itself). Metadata of generation -1 or without a member id is
//     refused locally, as the coordinator would accept it unchecked. The
//     coordinator refuses a member it no longer knows or an old generation
//     (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID): the
//     transaction is aborted, the append fails with provider.ErrNotOwner
//     (after waiting up to a second for a newer generation if the member
//     still owns the partitions, since a cooperative rebalance moves every
//     member's generation on). This is simpler than decoding librdkafka's
//     serialized metadata, and as safe: the coordinator checks the same two
//     fields.
//   - The takeover: AwaitStable sends OffsetFetch with require_stable (the
//     coordinator answers UNSTABLE_OFFSET_COMMIT while a transaction has
//     offsets pending), then waits until the last stable offsets reach the
//     committed offsets and the ends of the partitions; a dead instance's
//     transaction left open there is aborted by fencing its transactional
//     ids after kafkagroup.FenceAfter (package kafkagroup, "The takeover").
//   - An unknown commit outcome (EndTransaction failed and the abort too)
//     marks the partitions unsettled and replaces the lane's client; its
//     InitProducerID under the same transactional id completes or aborts
//     the transaction, and only then do appends to those partitions go on.
//   - Static membership (provider/kafka's "Static membership", the same
//     argument): the group client's instance id (kgo.InstanceID) is
//     GroupConfig.Instance. kgo sends no LeaveGroup when a static member
//     closes, so Close sends it itself after closing the group client
//     (unless StayOnClose): LeaveGroup v3+ naming the instance and the
//     member id it had, as Kafka's admin "remove members" does; naming the
//     member id too means a newer incarnation that already took the name
//     over is not removed (FENCED_INSTANCE_ID). A fenced group client needs
//     no replacement here (librdkafka's does: provider/kafka): kgo keeps
//     its member id until the coordinator answers UNKNOWN_MEMBER_ID, then
//     joins without one, and takes the partitions back from its own
//     assignment callback, as after any lost assignment; while another
//     process holds the name, kgo's joins are refused
//     (FENCED_INSTANCE_ID) and it does not fence it back.
//
// A record refused for what it is (too large) spoils its transaction: its
// append fails with the refusal, the others run again (kafkagroup), as in
// provider/kafka.
//
// # Security
//
// TLS is SecurityProtocol "ssl" with SSLCALocation and, for a client
// certificate, SSLCertLocation and SSLKeyLocation (PEM files; encrypted keys
// are not supported); SASL is "sasl_ssl" or "sasl_plaintext" with
// SASLMechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Secrets in Config
// never appear in its String, GoString or slog output.
package franz
