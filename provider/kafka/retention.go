package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider"
)

var _ provider.RetentionChecker = (*Provider)(nil)

// retentionCheck keeps CheckRetention's acceptance.
type retentionCheck struct {
	// sem is held by the one check under way; a channel rather than a
	// mutex so that a caller waiting for it still honours its context.
	sem      chan struct{}
	accepted bool // under sem
}

// CheckRetention implements provider.RetentionChecker. It reads the topic's
// effective configuration with DescribeConfigs (the topic's own settings,
// the brokers' defaults where it has none) and refuses a topic that can lose
// records, with an error wrapping provider.ErrNotRetained that names each
// setting, its value and where it comes from, and gives the kafka-configs
// command that fixes them:
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
//
// An acceptance is kept for the Provider's lifetime: one DescribeConfigs
// per Provider, however many restores and takeovers ask (a topic
// reconfigured to drop records later is noticed by the next Provider, and a
// partition whose records expired meanwhile by the restore's own check of
// its log start). A refusal, or a failure to get an answer
// (provider.ErrUnavailable, no DescribeConfigs ACL on the topic), is not
// kept: the next call asks again, so a caller that retries sees the topic
// once it is fixed.
//
// With Config.AllowExpiringTopic it returns nil without asking the broker.
func (p *Provider) CheckRetention(ctx context.Context) error {
	if p.isClosed() {
		return provider.ErrClosed
	}
	if p.cfg.AllowExpiringTopic {
		return nil
	}
	c := &p.retention
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sem }()
	if c.accepted {
		return nil
	}
	configs, err := p.describeTopic(ctx)
	if err != nil {
		return err
	}
	if err := p.refusal(losses(configs)); err != nil {
		return err
	}
	c.accepted = true
	return nil
}

// describeTopic returns the topic's effective configuration, retrying
// retriable errors (a broker that does not know a new topic yet) within the
// configured Timeout.
func (p *Provider) describeTopic(ctx context.Context) (map[string]ckafka.ConfigEntryResult, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		res, err := p.admin.DescribeConfigs(ctx, []ckafka.ConfigResource{{Type: ckafka.ResourceTopic, Name: p.cfg.Topic}})
		if err == nil {
			if len(res) != 1 {
				return nil, fmt.Errorf("kafka: describe configs of %s: %d results for one topic", p.cfg.Topic, len(res))
			}
			if res[0].Error.Code() == ckafka.ErrNoError {
				p.handshake.Store(nil)
				return res[0].Config, nil
			}
			err = res[0].Error
		}
		var ke ckafka.Error
		if errors.As(err, &ke) && ke.Code() == ckafka.ErrTopicAuthorizationFailed {
			return nil, fmt.Errorf("kafka: describe configs of %s, to check that the topic keeps its events: "+
				"the principal needs DescribeConfigs on the topic (or set AllowExpiringTopic, see its documentation): %w", p.cfg.Topic, err)
		}
		if !retriable(err) {
			return nil, p.brokerError("describe configs", err)
		}
		p.log.Debug("kafka: describe configs: retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			if errors.As(err, &ke) && ke.Code() == ckafka.ErrUnknownTopicOrPart {
				return nil, fmt.Errorf("kafka: describe configs: topic %q does not exist: %w", p.cfg.Topic, err)
			}
			if errors.Is(err, provider.ErrUnavailable) {
				return nil, err
			}
			return nil, fmt.Errorf("kafka: describe configs of %s: %w: still failing after %v: %w", p.cfg.Topic, provider.ErrUnavailable, p.cfg.Timeout, err)
		case <-time.After(backoff):
		}
	}
}

// loss is a topic setting under which records can go.
type loss struct {
	name, value string
	source      ckafka.ConfigSource
	reported    bool   // false: the broker did not report the setting
	why         string // what the value does to records
	keep        string // the value that keeps every record
}

// losses returns the settings of a topic's effective configuration under
// which records can go, in a stable order.
func losses(configs map[string]ckafka.ConfigEntryResult) []loss {
	var out []loss
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
		out = append(out, loss{name: "cleanup.policy", value: policy.Value, source: policy.Source, reported: ok, keep: "delete",
			why: "the log cleaner keeps only the last record of each key, and a key is an aggregate: its earlier events go"})
	}
	if !compact && !deletes {
		// Neither policy: an empty list, which recent Kafka versions accept
		// and document as infinite retention (no segment is deleted,
		// whatever retention.ms and retention.bytes say).
		return out
	}
	for _, name := range []string{"retention.ms", "retention.bytes"} {
		e, ok := configs[name]
		l := loss{name: name, value: e.Value, source: e.Source, reported: ok, keep: "-1"}
		n, err := strconv.ParseInt(strings.TrimSpace(e.Value), 10, 64)
		switch {
		case !ok:
			l.why = "the broker did not report it, so it may be anything"
		case err != nil:
			l.why = "not a number"
		case n < 0:
			continue // -1: no limit
		case name == "retention.ms":
			l.why = "records older than " + age(time.Duration(n)*time.Millisecond) + " are deleted"
		default:
			l.why = fmt.Sprintf("the oldest records of a partition are deleted once it holds more than %d bytes", n)
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
func (l loss) describe() string {
	if !l.reported {
		return l.name + " not reported"
	}
	from := ""
	switch l.source {
	case ckafka.ConfigSourceDynamicTopic:
		from = "set on the topic"
	case ckafka.ConfigSourceDynamicBroker, ckafka.ConfigSourceDynamicDefaultBroker:
		from = "the brokers' dynamic default"
	case ckafka.ConfigSourceStaticBroker:
		from = "the brokers' server.properties"
	case ckafka.ConfigSourceDefault:
		from = "Kafka's default"
	}
	if from == "" {
		return l.name + "=" + l.value
	}
	return l.name + "=" + l.value + " (" + from + ")"
}

// refusal returns nil when nothing can go, else the error that names what
// can and how to fix it.
func (p *Provider) refusal(ls []loss) error {
	if len(ls) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kafka: topic %s does not keep its events, and a restore reads every event from offset 0: ", p.cfg.Topic)
	fixes := make([]string, 0, len(ls))
	for i, l := range ls {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", l.describe(), l.why)
		fixes = append(fixes, l.name+"="+l.keep)
	}
	slices.Sort(fixes)
	fmt.Fprintf(&b, ". Fix: kafka-configs --bootstrap-server %s --alter --entity-type topics --entity-name %s --add-config %s "+
		"(events already gone stay gone). To restore anyway, as long as every partition still starts at offset 0, "+
		"set kafka.Config.AllowExpiringTopic (KAFKA_ALLOW_EXPIRING_TOPIC=true)",
		p.cfg.Brokers, p.cfg.Topic, strings.Join(fixes, ","))
	return fmt.Errorf("%s: %w", b.String(), provider.ErrNotRetained)
}
