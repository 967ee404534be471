package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A writer that snapshots continuously under load is killed with SIGKILL
// again and again, at random moments (so, some of the time, while a
// snapshot is being copied or written); each restart restores from
// snapshots plus their tails, and nothing acknowledged is lost: the topic
// holds every acknowledged update, and the last writer's memory equals a
// full replay.
func TestSnapshotsSurviveKill9(t *testing.T) {
	tp := newTopic(t)
	env := []string{"WRITER_INSTANCE=snapshotted", "KAFKA_SESSION_TIMEOUT=6s", "WRITER_SNAPSHOT_INTERVAL=50ms"}
	w := startWriter(t, tp, env...)
	w.waitReady()
	ids := createUsers(t, w, 150)
	rng := rand.New(rand.NewPCG(5, 5))
	unusable, fromSnapshots := 0, 0
	for round := range 3 {
		load := newFleetLoad(t, ids, w)
		load.start(8)
		at := time.Now()
		runFor := time.Duration(500+rng.IntN(2000)) * time.Millisecond
		eventually(t, "load under snapshots", func() (bool, string) {
			return time.Since(at) > runFor && load.ok.Load() > 50, fmt.Sprint(load.ok.Load(), " acknowledged")
		})
		w.kill9()
		load.halt()
		load.checkTopic(tp)

		w = startWriter(t, tp, env...)
		w.waitServing(6)
		restored := w.logRecord("restored: ready")
		fromSnapshots += int(restored["from_snapshots"].(float64))
		unusable += w.countLogs("newer snapshots unusable") + w.countLogs("no usable snapshot")
		t.Logf("round %d: killed after %v and %d updates; restart: %v events read, %v of 6 partitions from snapshots",
			round, runFor, load.ok.Load(), restored["events"], restored["from_snapshots"])
	}
	assert.Positive(t, fromSnapshots, "restarts restore from snapshots")
	t.Logf("%d snapshots found unusable (written in part when the writer died) over the restarts", unusable)
	checkEqualsReplay(t, w, tp.replay(t))
}

// logRecord returns the last JSON log record with message msg, or fails.
func (s *service) logRecord(msg string) map[string]any {
	s.t.Helper()
	// The line may follow the readiness it reports by a moment (/readyz
	// flips before the writer logs it): poll for it.
	var found map[string]any
	eventually(s.t, s.name+" logs "+msg, func() (bool, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i := len(s.logs) - 1; i >= 0; i-- {
			var rec map[string]any
			if json.Unmarshal([]byte(s.logs[i]), &rec) == nil && rec["msg"] == msg {
				found = rec
				return true, ""
			}
		}
		return false, "not logged yet"
	})
	return found
}

// countLogs counts the log lines that contain substr.
func (s *service) countLogs(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.logs {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}
