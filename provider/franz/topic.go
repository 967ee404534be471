package franz

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

// EnsureTopic creates the provider's topic if it does not exist and waits,
// bounded by ctx and the configured Timeout, until its partitions have
// leaders that answer offset queries. It behaves as provider/kafka's: the
// topic is created to keep its events for good (retention.ms=-1,
// retention.bytes=-1, cleanup.policy=delete), an entry of spec.Config for
// one of these keys wins over it, and an existing topic is left as it is.
func (p *Provider) EnsureTopic(ctx context.Context, spec TopicSpec) error {
	if spec.Partitions < 1 {
		return fmt.Errorf("franz: ensure topic %s: %d partitions: need at least 1", p.cfg.Topic, spec.Partitions)
	}
	rf := int16(spec.ReplicationFactor)
	if rf == 0 {
		rf = -1
	}
	config := kafkaconfig.KeepEvents()
	maps.Copy(config, spec.Config)
	configs := make(map[string]*string, len(config))
	for k, v := range config {
		configs[k] = &v
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	res, err := p.admin.CreateTopic(ctx, int32(spec.Partitions), rf, configs, p.cfg.Topic)
	if err == nil {
		err = res.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return p.brokerError("create topic", err)
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
