//go:build cgo

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
// # A topic that keeps its events
//
// A repository restores by reading every partition from offset 0, so the
// event topic must never drop a record. EnsureTopic creates it with
// retention.ms=-1, retention.bytes=-1 and cleanup.policy=delete. Provider
// implements provider.RetentionChecker: before a restore or a takeover, the
// repository has CheckRetention read the topic's effective configuration
// (DescribeConfigs, once per Provider) and refuse a topic whose records can
// expire or be compacted away, naming the setting and the kafka-configs
// command that fixes it. Config.AllowExpiringTopic skips the check; the
// repository still refuses a partition whose log start is above 0.
//
// # Appends
//
// The producer is idempotent with acks=all and partitions by murmur2 of the
// key, as Kafka's Java client does. Append returns once every record's
// delivery report is in. A report that proves the record was not written
// (the queue was full, the broker refused it) gives a plain error;
// provider.ErrOutcomeUnknown marks the others (a timeout: librdkafka cannot
// tell whether the broker wrote it). Concurrent appends share the producer's
// batches (Config.Linger). The broker refuses a whole batch above the
// topic's max.message.bytes, so a small record that shared one with a record
// too large is refused with it: such a record, which fits a batch alone
// (the topic's limit is read once a record is refused so), fails
// provider.ErrUnavailable, not written, and in a transaction is not the
// culprit (kafkaconfig.MessageLimit). The same holds in provider/franz.
//
// # Groups and fenced appends
//
// Provider implements provider.Grouper. JoinGroup makes the process a member
// of a consumer group on the topic (classic protocol, cooperative-sticky
// assignor; the member never fetches: its partitions are assigned and paused
// at once) with Config.GroupProducers transactional producers of its own,
// its lanes, transactional.id "<group>-<instance>-<n>". The lanes and the
// transaction steps are package kafkagroup's, shared with provider/franz;
// this package is confluent-kafka-go's side of them. Appends queue for the
// lane whose turn it is (the lanes take turns, at most GroupProducers−1
// transactions at once: kafkagroup.InFlight), which runs one transaction at
// a time: every append queued when a transaction starts rides in it (group
// commit), and each is acknowledged after the commit, so an append's records
// are all visible to read-committed readers or none is. With three lanes or
// more, one produces its transaction while another commits. The consumer's
// client.id carries the member's Address ("<ClientID>;instance=…;address=…", percent-encoded),
// which is how Owners reads it from the group's description. Properties
// cannot override the settings the fencing rests on (group.protocol,
// partition.assignment.strategy, isolation.level, client.id,
// transactional.id, acks, enable.idempotence).
//
// Why a member that lost a partition cannot write to it (the argument is
// package kafkagroup's, for both Kafka providers; here with librdkafka's
// particulars):
//
//  1. The generation check. Before its commit, every transaction sends
//     offsets for each partition it writes, a real offset (librdkafka sends
//     nothing for a logical one: the end of what the member last committed
//     there, sent while the records are produced, or on its first write
//     there the end of what the transaction wrote), with the member's
//     consumer group metadata read just before; the commit
//     waits for the check and for every record. The group
//     coordinator refuses a member it no longer knows or a generation it has
//     left (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID): the
//     transaction is aborted and the append fails with provider.ErrNotOwner.
//     A process paused past its session timeout or max.poll.interval.ms is
//     refused so, also after re-initialising its producers late: their
//     transactional ids are its own, so its InitTransactions fences only
//     its own earlier producers, never another member's. Transactions of
//     several lanes overlap; each is checked on its own.
//  2. The "no generation" hole. Metadata of generation -1 without a member
//     id, which librdkafka hands out before the first join and after
//     leaving the group, is accepted by the coordinator as coming from a
//     producer outside any group. The member refuses to send it, or
//     anything it cannot decode, and fails the append with ErrNotOwner.
//  3. Ownership held through the commit. The coordinator checks membership,
//     not partitions: a current member could still commit to a partition
//     it has just given up. An append counts as in flight on its partitions
//     from Append's ownership check until its outcome is decided, on
//     whichever lane; a
//     revocation marks the partitions not owned (new appends fail at once),
//     waits for the appends in flight, calls OnRevoked and only then lets
//     the group move them. The cooperative protocol gives a partition to
//     another member only after that.
//  4. The takeover. A transaction that passed the check may still commit
//     late: its commit timed out, or its member was dropped just after the
//     check. Member.AwaitStable reads the group's committed offsets with
//     require_stable, which the coordinator answers only once no
//     transaction has offsets pending for the partitions, then waits until
//     their last stable offsets reach those committed offsets, the end of
//     the last transaction (the coordinator writes the commit markers of
//     the offsets and of the records separately), and the ends of the
//     partitions (no transaction open on them). After that,
//     nothing of an earlier owner can appear below the last stable offset
//     that Partitions reports and a new owner restores to.
//
// librdkafka has no transactions v2 (KIP-890 part 2; librdkafka #5423): each
// transaction registers its partitions (AddPartitionsToTxn, one request at a
// time, retried 20 ms after CONCURRENT_TRANSACTIONS while the previous
// transaction of the same transactional.id is still completing) and its
// group (AddOffsetsToTxn) in round trips of their own, which is most of
// what a fenced append costs beyond a plain one (README, "Commands in
// fenced transactions").
//
// A commit whose outcome stays unknown (it timed out, the producer failed)
// fails its appends with provider.ErrOutcomeUnknown; the producer is then
// replaced before anything else, and InitTransactions under the same
// transactional.id completes or aborts what it left open. Appends to the
// partitions it wrote wait for that through any lane (bounded by
// Config.Timeout), so a
// partition's appends stay ordered: an append that starts after another
// returned lands after it, if at all.
//
// A transaction left open by a dead instance would block read-committed
// readers of its partitions, and their next owner's AwaitStable, until the
// broker aborts it after Config.TransactionTimeout. It does not: the
// instance restarting under the same GroupConfig.Instance initialises its
// producers when it joins, which ends their open transactions at once; and
// a new owner whose partitions stay unstable for kafkagroup.FenceAfter
// initialises the transactional ids of the instances that last committed
// on the topic (each offset a member commits carries its transactional id
// as metadata) and are no members of the group now. Under ACLs a member
// also needs Read on its group, Describe on the group's offsets, and
// Write and Describe on the transactional ids "<group>-*" (its own, and
// those of instances it fences).
//
// # Static membership
//
// A member is static: its consumer's group.instance.id is
// GroupConfig.Instance (KIP-345, classic protocol). The same instance
// restarting (kill -9, an out-of-memory kill, a node drain) joins with that
// id and an unknown member id; the coordinator replaces the member it knew
// under the id by the new one at once, keeps the assignment, and, when the
// group is stable, keeps the generation (Kafka does not rebalance; kfake
// does): the partitions are back as soon as the new process has joined,
// without waiting for the old one's session to time out. Why the old
// incarnation, should it still run (paused, partitioned away), cannot write
// once the new one has joined, although the generation is the same:
//
//  1. The producers first. JoinGroup initialises the member's transactional
//     producers before it joins the group; their transactional ids are the
//     old incarnation's ("<group>-<instance>-<n>"), so InitTransactions
//     bumps their epoch: the old producers are fenced (every later produce
//     or commit of theirs fails) and their open transactions are aborted at
//     once, which is also why the takeover's AwaitStable does not wait.
//  2. The member id. The coordinator checks a transaction's offsets against
//     the member id before the generation: the old incarnation's member id
//     is no longer in the group (UNKNOWN_MEMBER_ID, or FENCED_INSTANCE_ID
//     when the metadata names the instance, which librdkafka's does), so
//     its transaction is refused even if it re-initialised its producers
//     after the new incarnation's (which fences the new one's producers:
//     their appends fail and their producers are replaced, but nothing of
//     the old one commits). The same holds at every later swap: a name
//     held by two live processes makes them take turns, never write both.
//     A StatefulSet never runs two pods of one name; a Deployment's pod
//     names are random, so each start is a new member, and a crashed
//     instance's partitions wait for its session timeout
//     (Config.SessionTimeout).
//  3. A fenced consumer rejoins (rejoin.go). librdkafka makes
//     FENCED_INSTANCE_ID fatal to the consumer that gets it, and can fence
//     itself: when its own session timer runs out (no heartbeat answered,
//     as while the group coordinator moves) it forgets its member id and
//     revokes everything as lost, but heartbeats on without the id to a
//     coordinator that still holds the member. The member then replaces
//     the consumer by a new one under the same Instance, unless the
//     group's description shows the Instance held under another member id
//     than the one it last had (another process took the name: rejoining
//     would fence it in turn). Nothing of the fenced consumer can write:
//     its partitions are revoked (appends fail, those in flight end)
//     before the new consumer subscribes; its metadata is refused by the
//     coordinator; the new consumer's JoinGroup replaces the member id the
//     coordinator holds, possibly at the same generation, and the
//     partitions are owned again only from the new consumer's assignment
//     callback, whose metadata every transaction reads from then on. The
//     old consumer's own callbacks, as it closes, leave the ownership
//     alone. Every consumer Close is bounded by Config.SessionTimeout +
//     Config.Timeout: a fatal consumer's Close polls for good, and one that
//     does not end is left behind, with a warning.
//
// Close leaves the group by default: librdkafka sends no LeaveGroup when a
// static member's consumer closes, but it does when it unsubscribes (a
// LeaveGroup naming the member id, which the coordinator honours for a
// static member too), so the member unsubscribes, waits until librdkafka
// has taken its partitions back, and then closes. With
// GroupConfig.StayOnClose it gives its partitions back to librdkafka
// without unsubscribing: the group keeps them for the instance's return, or
// until its session times out. Neither needs a request librdkafka cannot
// make; this module needs no other Kafka client for it.
//
// # Security
//
// TLS is SecurityProtocol "ssl" with SSLCALocation and, for a client
// certificate, SSLCertLocation and SSLKeyLocation (PEM files; an encrypted
// key takes Properties["ssl.key.password"]); SASL over TLS is "sasl_ssl" with
// SASLMechanism (e.g. SCRAM-SHA-512), SASLUsername and SASLPassword.
//
// Under ACLs the principal needs Describe, DescribeConfigs (unless
// AllowExpiringTopic) and Read on the topic to restore, Write to append, and
// Create for EnsureTopic; no group ACL (the read's
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
