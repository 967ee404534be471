//go:build cgo

package main

// Where a fenced transaction's time goes: the lanes log a Debug record per
// committed transaction with the time of each step
// (kafkagroup.TxnCommittedMsg); txnSteps sums them over a measurement.

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// slowProduce is a produce step long enough to have met the broker's
// CONCURRENT_TRANSACTIONS retry (add.partitions.to.txn.retry.backoff.ms,
// 20 ms by default; librdkafka's own AddPartitionsToTxn retry alike).
const slowProduce = 15 * time.Millisecond

// txnSteps is a slog.Handler that sums the lanes' step timings.
type txnSteps struct {
	mu sync.Mutex
	s  stepTotals
}

// stepTotals are the sums of the steps of a measurement's transactions.
type stepTotals struct {
	Txns, Appends, Slow                  int64
	Queued, Produce, SendOffsets, Commit time.Duration
}

// stepMeans are a measurement's mean step times per transaction, in ms.
type stepMeans struct {
	Txns                                     int64
	AppendsPerTxn                            float64
	QueuedMs, ProduceMs, OffsetsMs, CommitMs float64
	SlowShare                                float64 // of the transactions, those whose produce took over slowProduce
}

// Enabled is true for the lanes' level alone: the clients' own Debug
// narration stays off.
func (h *txnSteps) Enabled(_ context.Context, l slog.Level) bool { return l == kafkagroup.TxnLevel }
func (h *txnSteps) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *txnSteps) WithGroup(string) slog.Handler                { return h }
func (h *txnSteps) Handle(_ context.Context, r slog.Record) error {
	if r.Message != kafkagroup.TxnCommittedMsg {
		return nil
	}
	var t stepTotals
	t.Txns = 1
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "appends":
			t.Appends = a.Value.Int64()
		case "queued":
			t.Queued = a.Value.Duration()
		case "produce":
			t.Produce = a.Value.Duration()
		case "send_offsets":
			t.SendOffsets = a.Value.Duration()
		case "commit":
			t.Commit = a.Value.Duration()
		}
		return true
	})
	if t.Produce > slowProduce {
		t.Slow = 1
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.s
	s.Txns += t.Txns
	s.Appends += t.Appends
	s.Slow += t.Slow
	s.Queued += t.Queued
	s.Produce += t.Produce
	s.SendOffsets += t.SendOffsets
	s.Commit += t.Commit
	return nil
}

// take returns the means since the last take, and starts again.
func (h *txnSteps) take() stepMeans {
	h.mu.Lock()
	s := h.s
	h.s = stepTotals{}
	h.mu.Unlock()
	if s.Txns == 0 {
		return stepMeans{}
	}
	n := float64(s.Txns)
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / n }
	// queued is a per-append mean already, per transaction.
	return stepMeans{Txns: s.Txns, AppendsPerTxn: float64(s.Appends) / n, QueuedMs: ms(s.Queued),
		ProduceMs: ms(s.Produce), OffsetsMs: ms(s.SendOffsets), CommitMs: ms(s.Commit), SlowShare: float64(s.Slow) / n}
}
