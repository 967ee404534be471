//go:build cgo

package kafka

import (
	"sync"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// logEvery is how often the same client error code is logged at most.
const logEvery = 10 * time.Second

// logLimiter keeps a storm of one client error (librdkafka reports "all
// brokers down" on every reconnect attempt) to one line per logEvery.
type logLimiter struct {
	mu   sync.Mutex
	last map[ckafka.ErrorCode]time.Time
}

func (l *logLimiter) allow(code ckafka.ErrorCode) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.last[code]) < logEvery {
		return false
	}
	if l.last == nil {
		l.last = make(map[ckafka.ErrorCode]time.Time)
	}
	l.last[code] = now
	return true
}
