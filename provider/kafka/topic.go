//go:build cgo

package kafka

import (
	"context"
	"fmt"
	"maps"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

// TopicSpec describes a topic for EnsureTopic.
type TopicSpec = kafkaconfig.TopicSpec

// EnsureTopic creates the provider's topic if it does not exist and waits,
// bounded by ctx and the configured Timeout, until its partitions have
// leaders that answer offset queries.
//
// The topic is created to keep its events for good: retention.ms=-1,
// retention.bytes=-1 and cleanup.policy=delete, which CheckRetention
// accepts. An entry of spec.Config for one of these keys wins over it (the
// topic may then be refused by CheckRetention); other entries are added.
//
// An existing topic is left as it is, whatever its partition count and
// configuration: CheckRetention tells whether it keeps its events.
func (p *Provider) EnsureTopic(ctx context.Context, spec TopicSpec) error {
	if spec.Partitions < 1 {
		return fmt.Errorf("kafka: ensure topic %s: %d partitions: need at least 1", p.cfg.Topic, spec.Partitions)
	}
	rf := spec.ReplicationFactor
	if rf == 0 {
		rf = -1
	}
	config := kafkaconfig.KeepEvents()
	maps.Copy(config, spec.Config)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	res, err := p.admin.CreateTopics(ctx, []ckafka.TopicSpecification{{
		Topic:             p.cfg.Topic,
		NumPartitions:     spec.Partitions,
		ReplicationFactor: rf,
		Config:            config,
	}})
	if err != nil {
		return p.brokerError("create topic", err)
	}
	for _, r := range res {
		if c := r.Error.Code(); c != ckafka.ErrNoError && c != ckafka.ErrTopicAlreadyExists {
			return p.brokerError("create topic", r.Error)
		}
	}
	for {
		if ps, err := p.partitions(ctx); err == nil && len(ps) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return p.brokerError("create topic", fmt.Errorf("partitions not ready: %w", ctx.Err()))
		case <-time.After(50 * time.Millisecond): // polling metadata, bounded by ctx
		}
	}
}
