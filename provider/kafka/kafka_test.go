//go:build cgo

package kafka_test

import (
	"testing"

	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/provider/providertest"
	"github.com/rehydrate/rehydrate/repository/repositorytest"
	"github.com/rehydrate/rehydrate/snapshot"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, kafkatest.Harness(kafka.New))
}

func TestRepositorySuite(t *testing.T) {
	repositorytest.Run(t, kafkatest.Topics(kafka.New, nil))
}

func TestSnapshotSuite(t *testing.T) {
	repositorytest.RunSnapshots(t, kafkatest.Topics(kafka.New, nil), kafkatest.Topics(kafka.New, snapshot.TopicConfig()))
}

func BenchmarkExecuteKafka(b *testing.B) {
	p, err := kafka.New(kafkatest.Config(b, 6, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	repositorytest.BenchmarkExecute(b, p)
}

func BenchmarkRestoreKafka1M(b *testing.B) {
	p, err := kafka.New(kafkatest.Config(b, 6, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	repositorytest.BenchmarkRestore(b, p, 1_000_000)
}

func TestRecordBesideOneTooLargeIsUnavailable(t *testing.T) {
	kafkatest.RecordBesideOneTooLarge(t, kafka.New)
}
