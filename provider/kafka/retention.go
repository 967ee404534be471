//go:build cgo

package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

var _ provider.RetentionChecker = (*Provider)(nil)

// CheckRetention implements provider.RetentionChecker. It reads the topic's
// effective configuration with DescribeConfigs (the topic's own settings,
// the brokers' defaults where it has none) and refuses a topic that can lose
// records (kafkaconfig.Losses says which), with an error wrapping
// provider.ErrNotRetained that names each setting, its value and where it
// comes from, and gives the kafka-configs command that fixes them.
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
	return p.retention.Check(ctx, p.cfg, p.topicSettings)
}

// topicSettings returns the topic's effective configuration in
// kafkaconfig's terms.
func (p *Provider) topicSettings(ctx context.Context) (map[string]kafkaconfig.Setting, error) {
	configs, err := p.describeTopic(ctx)
	return settings(configs), err
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
			if topicGone(err) {
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

// settings converts a DescribeConfigs answer for kafkaconfig.Losses.
func settings(configs map[string]ckafka.ConfigEntryResult) map[string]kafkaconfig.Setting {
	out := make(map[string]kafkaconfig.Setting, len(configs))
	for name, e := range configs {
		from := ""
		switch e.Source {
		case ckafka.ConfigSourceDynamicTopic:
			from = "set on the topic"
		case ckafka.ConfigSourceDynamicBroker, ckafka.ConfigSourceDynamicDefaultBroker:
			from = "the brokers' dynamic default"
		case ckafka.ConfigSourceStaticBroker:
			from = "the brokers' server.properties"
		case ckafka.ConfigSourceDefault:
			from = "Kafka's default"
		}
		out[name] = kafkaconfig.Setting{Value: e.Value, From: from}
	}
	return out
}
