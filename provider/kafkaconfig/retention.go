package kafkaconfig

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rehydrate/rehydrate/provider"
)

// Setting is one entry of a topic's effective configuration, as
// DescribeConfigs reports it.
type Setting struct {
	Value string
	// From says where the value comes from, in words ("set on the
	// topic", "Kafka's default"); empty when the client does not say.
	From string
}

// Loss is a topic setting under which records can go.
type Loss struct {
	Name, Value string
	From        string
	Reported    bool   // false: the broker did not report the setting
	Why         string // what the value does to records
	Keep        string // the value that keeps every record
}

// Losses returns the settings of a topic's effective configuration under
// which records can go, in a stable order:
//
//   - cleanup.policy contains compact: the log cleaner keeps only the last
//     record of each key, and a key is an aggregate;
//   - retention.ms or retention.bytes is not -1 (under cleanup.policy
//     delete, or compact, which the fix turns into delete): the oldest
//     segments are deleted past that age or size.
//
// Tiered storage's local.retention.ms and local.retention.bytes are not
// checked: they bound only the copy on the brokers' disks, and a segment
// moved to remote storage stays readable until retention.ms or
// retention.bytes delete it.
func Losses(configs map[string]Setting) []Loss {
	var out []Loss
	policy, ok := configs["cleanup.policy"]
	if !ok {
		policy.Value = "delete" // Kafka's default
	}
	var compact, deletes bool
	for _, s := range strings.Split(policy.Value, ",") {
		switch strings.ToLower(strings.Trim(strings.TrimSpace(s), "[]")) {
		case "compact":
			compact = true
		case "delete":
			deletes = true
		}
	}
	if compact {
		out = append(out, Loss{Name: "cleanup.policy", Value: policy.Value, From: policy.From, Reported: ok, Keep: "delete",
			Why: "the log cleaner keeps only the last record of each key, and a key is an aggregate: its earlier events go"})
	}
	if !compact && !deletes {
		// Neither policy: an empty list, which recent Kafka versions accept
		// and document as infinite retention (no segment is deleted,
		// whatever retention.ms and retention.bytes say).
		return out
	}
	for _, name := range []string{"retention.ms", "retention.bytes"} {
		e, ok := configs[name]
		l := Loss{Name: name, Value: e.Value, From: e.From, Reported: ok, Keep: "-1"}
		n, err := strconv.ParseInt(strings.TrimSpace(e.Value), 10, 64)
		switch {
		case !ok:
			l.Why = "the broker did not report it, so it may be anything"
		case err != nil:
			l.Why = "not a number"
		case n < 0:
			continue // -1: no limit
		case name == "retention.ms":
			l.Why = "records older than " + age(time.Duration(n)*time.Millisecond) + " are deleted"
		default:
			l.Why = fmt.Sprintf("the oldest records of a partition are deleted once it holds more than %d bytes", n)
		}
		out = append(out, l)
	}
	return out
}

// age formats a retention time as people set it.
func age(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d > 0 && d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + " days"
	}
	return d.String()
}

// describe says where a config value comes from.
func (l Loss) describe() string {
	if !l.Reported {
		return l.Name + " not reported"
	}
	if l.From == "" {
		return l.Name + "=" + l.Value
	}
	return l.Name + "=" + l.Value + " (" + l.From + ")"
}

// Refusal returns nil when nothing can go (ls is empty), else the error,
// wrapping provider.ErrNotRetained, that names what can go on c's topic
// and how to fix it.
func (c Config) Refusal(ls []Loss) error {
	if len(ls) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kafka: topic %s does not keep its events, and a restore reads every event from offset 0: ", c.Topic)
	fixes := make([]string, 0, len(ls))
	for i, l := range ls {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", l.describe(), l.Why)
		fixes = append(fixes, l.Name+"="+l.Keep)
	}
	slices.Sort(fixes)
	fmt.Fprintf(&b, ". Fix: kafka-configs --bootstrap-server %s --alter --entity-type topics --entity-name %s --add-config %s "+
		"(events already gone stay gone). To restore anyway, as long as every partition still starts at offset 0, "+
		"set kafka.Config.AllowExpiringTopic (KAFKA_ALLOW_EXPIRING_TOPIC=true)",
		c.Brokers, c.Topic, strings.Join(fixes, ","))
	return fmt.Errorf("%s: %w", b.String(), provider.ErrNotRetained)
}

// KeepEvents is the configuration EnsureTopic gives an event topic unless
// told otherwise: records never expire and are never compacted, so that a
// restore from offset 0 sees every event (see Losses).
func KeepEvents() map[string]string {
	return map[string]string{
		"retention.ms":    "-1",
		"retention.bytes": "-1",
		"cleanup.policy":  "delete",
	}
}

// TopicSpec describes a topic for the providers' EnsureTopic.
type TopicSpec struct {
	Partitions        int
	ReplicationFactor int               // 0 means the broker's default
	Config            map[string]string // topic configs, e.g. min.insync.replicas
}

// RetentionCheck is a provider's CheckRetention: it keeps an acceptance for
// the provider's lifetime (one DescribeConfigs per provider, however many
// restores and takeovers ask); a refusal, or a failure to get an answer, is
// not kept, so that a caller that retries sees the topic once it is fixed.
// The zero value is not usable: see NewRetentionCheck.
type RetentionCheck struct {
	// sem is held by the one check under way; a channel rather than a
	// mutex so that a caller waiting for it still honours its context.
	sem      chan struct{}
	accepted bool // under sem
}

// NewRetentionCheck returns a check that has accepted nothing yet.
func NewRetentionCheck() *RetentionCheck {
	return &RetentionCheck{sem: make(chan struct{}, 1)}
}

// Check returns nil when c.AllowExpiringTopic is set (without asking) or
// the topic was accepted before; else it asks describe for the topic's
// effective configuration and refuses what Losses finds (Refusal).
func (rc *RetentionCheck) Check(ctx context.Context, c Config, describe func(context.Context) (map[string]Setting, error)) error {
	if c.AllowExpiringTopic {
		return nil
	}
	select {
	case rc.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-rc.sem }()
	if rc.accepted {
		return nil
	}
	configs, err := describe(ctx)
	if err != nil {
		return err
	}
	if err := c.Refusal(Losses(configs)); err != nil {
		return err
	}
	rc.accepted = true
	return nil
}
