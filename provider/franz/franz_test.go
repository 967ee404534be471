package franz_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider/franz"
	"github.com/rehydrate/rehydrate/provider/providertest"
	"github.com/rehydrate/rehydrate/repository/repositorytest"
	"github.com/rehydrate/rehydrate/snapshot"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, kafkatest.Harness(franz.New))
}

func TestRepositorySuite(t *testing.T) {
	repositorytest.Run(t, kafkatest.Topics(franz.New, nil))
}

func TestSnapshotSuite(t *testing.T) {
	repositorytest.RunSnapshots(t, kafkatest.Topics(franz.New, nil), kafkatest.Topics(franz.New, snapshot.TopicConfig()))
}

func TestNewValidates(t *testing.T) {
	_, err := franz.New(franz.Config{})
	require.EqualError(t, err, "kafka: Brokers is empty\nkafka: Topic is empty", "every problem at once")
}

func BenchmarkExecuteFranz(b *testing.B) {
	p, err := franz.New(kafkatest.Config(b, 6, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	repositorytest.BenchmarkExecute(b, p)
}

func BenchmarkRestoreFranz1M(b *testing.B) {
	p, err := franz.New(kafkatest.Config(b, 6, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	repositorytest.BenchmarkRestore(b, p, 1_000_000)
}

func TestRecordBesideOneTooLargeIsUnavailable(t *testing.T) {
	kafkatest.RecordBesideOneTooLarge(t, franz.New)
}
