//go:build cgo

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/internal/kafkatest"
)

// TestQuickRun runs the harness in -quick mode on the test broker, in
// process, so that it never rots.
func TestQuickRun(t *testing.T) {
	cfg := config{brokers: kafkatest.Brokers(t), out: t.TempDir()}.quickened()
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), cfg, &out))
	for _, want := range []string{"bare confluent-kafka-go consumer", "repository restore, Kafka, msgpack",
		"repository restore, Kafka, json", "memory provider", "| 64 |", "Commands in fenced transactions", "Where a fenced transaction's time goes", "Commands with each Kafka client",
		"B joins: from B's Restore until B serves its share", "A closes: from A.Close until B serves all",
		"Restore by instances joining at once", "| 3 | i3 |",
		"Restart with snapshots", "Execute with snapshots", "Writer start: process start to /readyz 200"} {
		assert.Contains(t, out.String(), want)
	}
	if os.Getenv("DATABASE_URL") != "" {
		assert.Contains(t, out.String(), "Projection into PostgreSQL")
	}
	for _, f := range []string{"results.md", "results.csv", "scaling.png", "clients-restore.png", "clients-execute.png"} {
		st, err := os.Stat(filepath.Join(cfg.out, f))
		require.NoError(t, err)
		assert.Positive(t, st.Size(), f)
	}
}
