package franz

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

var _ provider.RetentionChecker = (*Provider)(nil)

// CheckRetention implements provider.RetentionChecker as provider/kafka
// does (kafkaconfig.RetentionCheck): one DescribeConfigs per Provider, the
// topic refused when kafkaconfig.Losses finds a setting under which records
// can go. A refusal or a failure is not kept; with Config.AllowExpiringTopic
// nothing is asked.
func (p *Provider) CheckRetention(ctx context.Context) error {
	if p.isClosed() {
		return provider.ErrClosed
	}
	return p.retention.Check(ctx, p.cfg, p.describeTopic)
}

// describeTopic returns the topic's effective configuration, retrying
// retriable errors (a broker that does not know a new topic yet) within the
// configured Timeout.
func (p *Provider) describeTopic(ctx context.Context) (map[string]kafkaconfig.Setting, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		res, err := p.admin.DescribeTopicConfigs(ctx, p.cfg.Topic)
		if err == nil {
			var rc, rerr = res.On(p.cfg.Topic, nil)
			if rerr == nil {
				out := make(map[string]kafkaconfig.Setting, len(rc.Configs))
				for _, c := range rc.Configs {
					out[c.Key] = kafkaconfig.Setting{Value: c.MaybeValue(), From: source(c.Source)}
				}
				return out, nil
			}
			err = rerr
		}
		if errors.Is(err, kerr.TopicAuthorizationFailed) {
			return nil, fmt.Errorf("franz: describe configs of %s, to check that the topic keeps its events: "+
				"the principal needs DescribeConfigs on the topic (or set AllowExpiringTopic, see its documentation): %w", p.cfg.Topic, err)
		}
		if classify(err) != classUnavailable {
			return nil, p.brokerError("describe configs", err)
		}
		select {
		case <-ctx.Done():
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return nil, fmt.Errorf("franz: describe configs: topic %q does not exist: %w", p.cfg.Topic, err)
			}
			return nil, fmt.Errorf("franz: describe configs of %s: %w: still failing after %v: %w", p.cfg.Topic, provider.ErrUnavailable, p.cfg.Timeout, err)
		case <-time.After(backoff):
		}
	}
}

// source says where a config value comes from, in kafkaconfig.Setting's
// words.
func source(s kmsg.ConfigSource) string {
	switch s {
	case kmsg.ConfigSourceDynamicTopicConfig:
		return "set on the topic"
	case kmsg.ConfigSourceDynamicBrokerConfig, kmsg.ConfigSourceDynamicDefaultBrokerConfig:
		return "the brokers' dynamic default"
	case kmsg.ConfigSourceStaticBrokerConfig:
		return "the brokers' server.properties"
	case kmsg.ConfigSourceDefaultConfig:
		return "Kafka's default"
	}
	return ""
}
